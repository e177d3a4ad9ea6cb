"""Errors of the accounts domain. Every message is written for the person who will read it."""

from __future__ import annotations


class AccountsError(Exception):
    """A request the domain refuses. Callers (admin, CLI, MCP, webhooks) show `message` as it is."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class InvalidInput(AccountsError):
    """A field value failed validation (bad email, negative seats, unknown status…)."""

    code = "invalid_input"


class NotFound(AccountsError):
    """An organization or developer id that names nothing."""

    code = "not_found"


class DuplicateEmail(AccountsError):
    """Developer emails are unique across Hotcross, ignoring letter case."""

    code = "duplicate_email"


class SeatLimitReached(AccountsError):
    """The organization has no free seat for one more key holder."""

    code = "seat_limit_reached"


class KeyChanged(AccountsError):
    """The key changed since the caller looked (a replayed or concurrent rotation); nothing was done."""

    code = "key_changed"


class KeyRefused(AccountsError):
    """`authenticate_key` refused a key. `code` is stable (clients may branch on it), `message` is for people."""

    INVALID_KEY = "invalid_key"
    KEY_REVOKED = "key_revoked"
    KEY_ROTATED = "key_rotated"
    KEY_EXPIRED = "key_expired"
    DEVELOPER_INACTIVE = "developer_inactive"
    SUBSCRIPTION_INACTIVE = "subscription_inactive"
    SEAT_LIMIT_EXCEEDED = "seat_limit_exceeded"
    CODES = (
        INVALID_KEY,
        KEY_REVOKED,
        KEY_ROTATED,
        KEY_EXPIRED,
        DEVELOPER_INACTIVE,
        SUBSCRIPTION_INACTIVE,
        SEAT_LIMIT_EXCEEDED,
    )

    code = INVALID_KEY

    def __init__(self, code: str, message: str) -> None:
        if code not in self.CODES:
            raise ValueError(f"unknown refusal code {code!r}")
        super().__init__(message, code=code)

    def __repr__(self) -> str:
        return f"KeyRefused(code={self.code!r}, message={self.message!r})"


class NotAllowed(AccountsError):
    """The person's role in the organization does not allow this (an admin changing an owner, the last owner leaving,
    anyone acting on another organization)."""

    code = "not_allowed"


class Throttled(AccountsError):
    """Over a self-service limit (`accounts.throttle`): nothing was done; `retry_after` is the seconds to wait."""

    code = "throttled"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InvitationUnusable(AccountsError):
    """An invitation token that is unknown, used, revoked, expired, or for another address."""

    code = "invitation_unusable"
