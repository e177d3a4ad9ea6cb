"""The one door for credentials: `authenticate(credential)` / `aauthenticate(credential)` → `Caller`, or `KeyRefused`.

Like Django's `authenticate()` and its backends: the backends listed by dotted path in
`settings.HOTCROSS_CREDENTIAL_BACKENDS` are asked in order, and the first that says a credential is its kind
(`recognizes`) checks it. The project lists the API key check (`accounts.authentication.KeyBackend`: `hc_live_…`,
`mp_live_…`) and the OAuth access-token check (`oauth.authentication.TokenBackend`); `accounts` names neither in code,
so it never imports `oauth`.

A transport may accept only some kinds (`kinds=`: `/mcp/key` takes keys only). A credential none of the accepted
backends recognizes is checked by the first of them, which refuses it in its own words (an unknown key is
`invalid_key`: "This API key is not valid …").

What a backend checks and how (one query when cold, ≤ 1 s in `accounts.check_cache` when warm, the refusal rules of
`accounts.developer_check`) is the backend's; what a transport does with the answer (binding the caller, the request
log's developer id: `infra.request_log.note_developer`) is the transport's.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

API_KEY = "api_key"
OAUTH = "oauth"
KEYS_ONLY = frozenset({API_KEY})  # `kinds` of a door that takes API keys and nothing else


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as established by a credential check: the developer and their organization."""

    developer_id: uuid.UUID
    organization_id: uuid.UUID
    email: str
    first_name: str
    last_name: str
    organization_name: str
    subscription_status: str
    max_seats: int
    # The organization's own plan (`Organization.plan_id`); None: the default plan. What the plan allows is read
    # through `accounts.plans.aterms_for(principal.plan_id)` (a per-process table, at most a second old).
    plan_id: int | None = None


@dataclass(frozen=True, slots=True)
class Caller:
    """The answer of the door: the `Principal`, the kind of credential it came with (`API_KEY` or `OAUTH`) and, for an
    OAuth access token, the client it was issued to."""

    principal: Principal
    kind: str
    client_id: int | None = None
    client_name: str | None = None


class CredentialBackend(Protocol):
    """One kind of credential. `authenticate`/`aauthenticate` raise `KeyRefused` (and the async one
    `infra.db.DatabaseUnavailable` when the check cannot be made)."""

    kind: str

    def recognizes(self, credential: str) -> bool:
        """Whether the credential is of this backend's kind (by its shape alone: no database)."""

    def authenticate(self, credential: str) -> Caller: ...

    async def aauthenticate(self, credential: str) -> Caller: ...


def authenticate(credential: str, *, kinds: Collection[str] | None = None) -> Caller:
    """Who the credential belongs to, or `KeyRefused` with a stable `.code` and a message a person can act on.
    `kinds`: the kinds of credential accepted (None: every configured backend's)."""
    return _backend_for(credential, kinds).authenticate(credential)


async def aauthenticate(credential: str, *, kinds: Collection[str] | None = None) -> Caller:
    """`authenticate` for async code. Raises `KeyRefused`, or `infra.db.DatabaseUnavailable` when the check cannot be
    made."""
    return await _backend_for(credential, kinds).aauthenticate(credential)


def backends() -> tuple[CredentialBackend, ...]:
    """The configured backends, in order (loaded once; again after `HOTCROSS_CREDENTIAL_BACKENDS` changes)."""
    global _backends
    if _backends is None:
        _backends = tuple(import_string(path)() for path in settings.HOTCROSS_CREDENTIAL_BACKENDS)
        if not _backends:
            raise ImproperlyConfigured("HOTCROSS_CREDENTIAL_BACKENDS lists no credential backend.")
    return _backends


_backends: tuple[CredentialBackend, ...] | None = None


def _backend_for(credential: str, kinds: Collection[str] | None) -> CredentialBackend:
    allowed = [backend for backend in backends() if kinds is None or backend.kind in kinds]
    if not allowed:
        raise ValueError(f"No credential backend of the kinds {sorted(kinds or ())}.")
    for backend in allowed:
        if backend.recognizes(credential):
            return backend
    return allowed[0]


@receiver(setting_changed)
def _reset_backends(*, setting: str, **_kwargs: object) -> None:
    global _backends
    if setting == "HOTCROSS_CREDENTIAL_BACKENDS":
        _backends = None
