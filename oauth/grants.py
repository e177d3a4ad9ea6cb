"""OAuth grants of developers (issue 13): who consented to which MCP client, and the staff actions that end them.

django-oauth-toolkit keeps the tokens, for each developer's shadow user (`oauth.models.DeveloperAccount`); a grant
(`oauth.models.Grant`) is what people see and revoke. Revoking deletes the client's access tokens and revokes its
refresh tokens, so the next call with them is refused (within a second on every worker: the token check's memory).
Every change is in the admin history of the developer (and of the client, for a block). The domain's own actions
that end a developer's access (revoke, rotate, deactivate, sign out everywhere) reach this module through the signal
`accounts.signals.access_ended` (`end_access`): `accounts` never imports `oauth`.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from oauth2_provider.models import (
    get_access_token_model,
    get_application_model,
    get_grant_model,
    get_refresh_token_model,
)

from accounts import audit, signals
from accounts.models import Developer
from accounts.services._base import keys_changed
from oauth.models import DeveloperAccount, Grant

logger = logging.getLogger(__name__)


def shadow_user(*, developer: Developer) -> Any:
    """The developer's Django user for django-oauth-toolkit's rows: made once, never staff, no usable password."""
    account = DeveloperAccount.objects.select_related("user").filter(developer=developer).first()
    if account is not None:
        return account.user
    with transaction.atomic():
        user = get_user_model()(username=f"developer-{developer.pk}", is_staff=False, is_superuser=False)
        user.set_unusable_password()
        user.save()
        DeveloperAccount.objects.create(developer=developer, user=user)
    return user


def record_grant(*, developer: Developer, client: Any, actor: Any = None) -> Any:
    """The developer allowed `client` on the consent page: the grant (made, or made live again). `actor`: the
    developer's shadow user, so the history says who allowed it."""
    with transaction.atomic():
        grant, created = Grant.objects.select_for_update().get_or_create(developer=developer, client=client)
        if not created and grant.revoked_at is None:
            return grant
        if not created:
            grant.revoked_at = None
            grant.save(update_fields=["revoked_at"])
        audit.record(actor=actor, obj=developer, message=f"Allowed the OAuth client {client} (signed in).")
    logger.info("oauth grant made developer=%s client=%s", developer.pk, client.pk)
    return grant


def _end_tokens(*, developer_id: uuid.UUID, client_ids: list[int] | None) -> int:
    user = _shadow_user_of(developer_id)
    if user is None:
        return 0
    access = get_access_token_model().objects.filter(user=user)
    refresh = get_refresh_token_model().objects.filter(user=user, revoked=None)
    if client_ids is not None:
        access = access.filter(application_id__in=client_ids)
        refresh = refresh.filter(application_id__in=client_ids)
    ended, _ = access.delete()
    for token in refresh:
        token.revoke()
    return ended


def _end_codes(*, user: Any, client_ids: list[int] | None) -> int:
    """Delete the user's authorization codes not exchanged yet (of these clients; None: of every client)."""
    codes = get_grant_model().objects.filter(user=user)
    if client_ids is not None:
        codes = codes.filter(application_id__in=client_ids)
    ended, _ = codes.delete()
    return ended


def _shadow_user_of(developer_id: uuid.UUID) -> Any:
    account = DeveloperAccount.objects.select_related("user").filter(developer_id=developer_id).first()
    return None if account is None else account.user


def end_web_sign_ins(*, developer_id: uuid.UUID) -> Any:
    """End every web session of the developer (`/account/`, the consent page) and every authorization code they were
    given and a client has not exchanged yet. What every action that ends a developer's access does (sign out of
    every client, rotate, revoke, deactivate: `end_access`), in its transaction; a key's expiry needs no call: from
    then on the standing check refuses the developer's sessions, tokens and codes (`oauth.views`,
    `oauth.authentication`).

    Sessions end the way Django ends them when a password changes: a session is only valid with the hash of its
    user's password (`get_session_auth_hash`), and the shadow user gets a new unusable one. A view that must keep
    the session it serves (the developer rotating their own key) reloads its user and calls
    `update_session_auth_hash`. Returns the shadow user (None: the developer never signed in)."""
    user = _shadow_user_of(developer_id)
    if user is None:
        return None
    user.set_unusable_password()
    user.save(update_fields=["password"])
    _end_codes(user=user, client_ids=None)
    return user


def end_access(sender: Any, *, developers: list[Developer], reason: str, actor: Any = None, **kwargs: Any) -> int:
    """The receiver of `accounts.signals.access_ended` (connected in `OAuthConfig.ready`): what the OAuth app ends
    when a developer's access ends. Signed out everywhere (`sign_out_everywhere`): every grant, token, web session
    and unused authorization code; returns how many grants. Any other reason (revoked, rotated, deactivated): web
    sessions and unused authorization codes (`end_web_sign_ins`); returns how many of the developers had signed in."""
    if reason == signals.SIGNED_OUT_EVERYWHERE:
        return sum(sign_out_everywhere(developer=developer, actor=actor) for developer in developers)
    return sum(end_web_sign_ins(developer_id=developer.pk) is not None for developer in developers)


def revoke_grant(*, grant: Any, actor: Any = None) -> bool:
    """End one grant: its tokens stop working, and its authorization codes not exchanged yet are gone. False when it
    was already revoked."""
    now = timezone.now()
    with transaction.atomic():
        changed = bool(Grant.objects.filter(pk=grant.pk, revoked_at__isnull=True).update(revoked_at=now))
        _end_tokens(developer_id=grant.developer_id, client_ids=[grant.client_id])
        user = _shadow_user_of(grant.developer_id)
        if user is not None:
            _end_codes(user=user, client_ids=[grant.client_id])
        if changed:
            grant.revoked_at = now
            audit.record(actor=actor, obj=grant.developer, message=f"Revoked the OAuth grant to {grant.client}.")
    keys_changed()
    return changed


def sign_out_everywhere(*, developer: Developer, actor: Any = None) -> int:
    """ "Sign out of every client": every grant of the developer ends, every token stops, every web session and
    authorization code ends. Returns how many grants."""
    now = timezone.now()
    with transaction.atomic():
        count = Grant.objects.filter(developer=developer, revoked_at__isnull=True).update(revoked_at=now)
        _end_tokens(developer_id=developer.pk, client_ids=None)
        end_web_sign_ins(developer_id=developer.pk)
        audit.record(
            actor=actor,
            obj=developer,
            message=f"Signed out of every OAuth client ({count} grant(s) revoked)."
            " Web sessions and unused authorization codes ended.",
        )
    keys_changed()
    logger.info("oauth sign out of every client developer=%s grants=%s", developer.pk, count)
    return count


def block_client(*, client: Any, actor: Any = None) -> bool:
    """Block an OAuth client: no more authorizations or tokens for it, and its tokens stop now."""
    now = timezone.now()
    with transaction.atomic():
        changed = bool(get_application_model().objects.filter(pk=client.pk, blocked_at=None).update(blocked_at=now))
        if changed:
            client.blocked_at = now
            get_access_token_model().objects.filter(application=client).delete()
            for token in get_refresh_token_model().objects.filter(application=client, revoked=None):
                token.revoke()
            Grant.objects.filter(client=client, revoked_at=None).update(revoked_at=now)
            audit.record(actor=actor, obj=client, message="Blocked: no sign-in, every token ended.")
    keys_changed()
    return changed


def unblock_client(*, client: Any, actor: Any = None) -> bool:
    changed = bool(
        get_application_model().objects.filter(pk=client.pk).exclude(blocked_at=None).update(blocked_at=None)
    )
    if changed:
        client.blocked_at = None
        audit.record(actor=actor, obj=client, message="Unblocked: developers may allow it again.")
    return changed
