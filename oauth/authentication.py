"""The token check: an OAuth access token → the developer's `Principal`, under exactly the key check's refusal rules.

It shares the key check's pieces (`accounts.authentication`): the same columns of the developer and its seat rank,
compiled once per connection and kept prepared on PostgreSQL, the same refusal rules and messages
(`developer_refusal`), and the same ≤ 1 s per-process memory (`accounts.check_cache`, under the token's checksum), which
every write through `accounts.services` clears. So a revocation, deactivation, status or seat change, and a staff
"sign out", reach tokens and keys alike within a second on every worker.

What only tokens have: an expiry (an hour), and an audience (RFC 8707): a token bound to another resource than `/mcp`
is refused. A token nobody holds (revoked, signed out, the client blocked: django-oauth-toolkit's rows are gone) is
`invalid_key`, never remembered. Rotating the developer's key does not touch tokens: they are separate credentials.
"""

from __future__ import annotations

import datetime
import hashlib
import time
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import DateTimeField, F, Value
from django.utils import timezone

from accounts import check_cache
from accounts.authentication import (
    DEVELOPER_CHECK_FIELDS,
    HASH_PLACEHOLDER,
    DeveloperRow,
    Principal,
    Statement,
    compile_query,
    developer_refusal,
    fetch_row,
    principal_of,
    split_row,
)
from accounts.exceptions import KeyRefused
from accounts.models import Developer
from infra import metrics
from infra.db import BOOKKEEPING, SharedReads

LAST_USED_RESOLUTION = 60.0  # seconds: a grant's last use is written at most once a minute per process
_TOKEN_FIELDS = ("expires", "resource", "application_id")
_KEY_ONLY_FIELDS = ("api_key_last_used_at",)  # developer columns a token check never reads
_MAX_TOKEN_LENGTH = 512


def mcp_resource() -> str:
    """The canonical URL of `/mcp` (RFC 8707 resource, RFC 9728 `resource`): what tokens must be bound to."""
    return settings.HOTCROSS_PUBLIC_URL + "/mcp"


@dataclass(frozen=True, slots=True)
class TokenCaller:
    """Who a token is for, and through which client."""

    principal: Principal
    client_id: int
    client_name: str


@dataclass(frozen=True, slots=True)
class _Checked:
    caller: TokenCaller | None
    refusal: tuple[str, str] | None
    expires_at: float | None  # a POSIX timestamp: compared with time.time(), cheaper than timezone.now()


def token_checksum(raw_token: str) -> str:
    """How django-oauth-toolkit finds a token (`token_checksum`: SHA-256 hex of the token)."""
    return hashlib.sha256(raw_token.encode("utf-8")).hexdigest()


def authenticate_token(raw_token: str) -> TokenCaller:
    """The developer an access token was issued to, or `KeyRefused` (the key check's codes)."""
    try:
        checksum = _checksum_of(raw_token)
        checked = check_cache.get("oauth:" + checksum)
        if checked is None:
            checked = _check_in_database(checksum)
        caller = _outcome(checked)
    except KeyRefused as refusal:
        metrics.TOKEN_CHECKS.labels(refusal.code).inc()
        raise
    _TOKEN_CHECKS_OK.inc()
    return caller


async def aauthenticate_token(raw_token: str) -> TokenCaller:
    """`authenticate_token` for async code (same memory; cold checks on the bookkeeping threads, one per token at a
    time). Raises `KeyRefused` or `infra.db.DatabaseUnavailable`."""
    try:
        checksum = _checksum_of(raw_token)
        checked = check_cache.get("oauth:" + checksum)
        if checked is None:
            checked = await _cold_checks.read(checksum)
        caller = _outcome(checked)
    except KeyRefused as refusal:
        metrics.TOKEN_CHECKS.labels(refusal.code).inc()
        raise
    _TOKEN_CHECKS_OK.inc()
    return caller


_TOKEN_CHECKS_OK = metrics.TOKEN_CHECKS.labels("ok")


def _checksum_of(raw_token: str) -> str:
    token = (raw_token or "").strip()
    if not token or len(token) > _MAX_TOKEN_LENGTH:
        raise invalid_token()
    return token_checksum(token)


def _outcome(checked: _Checked) -> TokenCaller:
    if checked.refusal is not None:
        raise KeyRefused(*checked.refusal)
    if checked.expires_at is not None and checked.expires_at <= time.time():
        raise invalid_token(expired=True)
    assert checked.caller is not None
    return checked.caller


def _check_in_database(checksum: str) -> _Checked:
    connection = connections[DEFAULT_DB_ALIAS]
    row = fetch_row(connection, _token_check_statement(connection), checksum)
    if row is None:
        raise invalid_token()
    found, (_token_user_id, expires, resource, client_id) = split_row(row)
    if list(resource or []) != [mcp_resource()]:  # this server's MCP resource, and no other audience (RFC 8707)
        checked = _Checked(None, (KeyRefused.INVALID_KEY, WRONG_AUDIENCE), None)
    else:
        refusal = developer_refusal(found)
        caller = None
        if refusal is None:
            caller = TokenCaller(principal_of(found), client_id, _client_name(client_id))
            _touch_grant(found.developer_id, client_id)
        expires_at = expires.timestamp() if isinstance(expires, datetime.datetime) else expires
        checked = _Checked(caller, None if refusal is None else (refusal.code, refusal.message), expires_at)
    check_cache.put("oauth:" + checksum, checked)
    return checked


_cold_checks = SharedReads(BOOKKEEPING, _check_in_database)


def _token_check_statement(connection: BaseDatabaseWrapper) -> Statement:
    """The token check's one statement, compiled once per connection (and kept prepared on PostgreSQL like the key
    check's): the token found by its checksum, joined straight to its developer's key-check columns.

    The ORM can only reach a token from a developer through the shadow user's row (`auth_user`), which the check
    never reads; joining the token to `DeveloperAccount.user_id` instead saves a lookup on every cold check. So the
    developer part is the key check's query (the ORM's SQL, with its converters), as a subquery the database
    flattens into the join. The one column only the key needs (its last use) comes back as NULL (the key's expiry
    is read: it ends the developer's tokens too), and PostgreSQL gives the token's expiry as a POSIX timestamp:
    building a datetime from a row costs more than a lookup.
    """
    prepared = getattr(connection, "_hotcross_token_check", None)
    if prepared is None:
        from oauth2_provider.models import get_access_token_model

        skipped = {name: f"unread_{name}" for name in _KEY_ONLY_FIELDS}
        developers = Developer.objects.with_seat_rank().filter(oauth_account__isnull=False)
        developers = developers.annotate(
            token_user_id=F("oauth_account__user_id"),
            **{alias: Value(None, output_field=DateTimeField()) for alias in skipped.values()},
        )
        fields = tuple(skipped.get(name, name) for name in DEVELOPER_CHECK_FIELDS)
        dev_sql, dev_params, compiler, converters = compile_query(connection, developers, (*fields, "token_user_id"))
        access_token = get_access_token_model()
        *_, token_converters = compile_query(connection, access_token.objects.all(), _TOKEN_FIELDS)
        offset = len(fields) + 1  # the token's columns come after the developer's and token_user_id
        converters = {**converters, **{i + offset: c for i, c in token_converters.items()}}
        quote = connection.ops.quote_name
        # Names from the models, quoted; the values are parameters.
        table = quote(access_token._meta.db_table)
        user, checksum, *columns = (
            f"t.{quote(access_token._meta.get_field(name).column)}"
            for name in ("user", "token_checksum", *_TOKEN_FIELDS)
        )
        if connection.vendor == "postgresql":
            columns[0] = f"EXTRACT(EPOCH FROM {columns[0]})::float8"
            converters.pop(offset, None)
        sql = f"SELECT d.*, {', '.join(columns)} FROM ({dev_sql}) d INNER JOIN {table} t"  # noqa: S608
        sql += f" ON {user} = d.{quote('token_user_id')} WHERE {checksum} = %s"
        params = [*dev_params, HASH_PLACEHOLDER]
        prepared = (sql, params, len(params) - 1, compiler, converters)
        connection._hotcross_token_check = prepared
    return prepared


_client_names: dict[int, str] = {}


def _client_name(client_id: int) -> str:
    """A client's name, for `whoami` (remembered per process: a name is only displayed, and one join fewer keeps the
    cold token check close to the key check's cost)."""
    name = _client_names.get(client_id)
    if name is None:
        from oauth2_provider.models import get_application_model

        found = get_application_model().objects.filter(pk=client_id).values_list("name", flat=True).first()
        name = found or "an unnamed client"
        if len(_client_names) > 10_000:
            _client_names.clear()
        _client_names[client_id] = name
    return name


_grant_writes: dict[tuple[uuid.UUID, int], float] = {}


def _touch_grant(developer_id: uuid.UUID, client_id: int) -> None:
    """The grant's `last_used_at`, at most once a minute (per process; the condition keeps workers from each
    writing it)."""
    now = time.monotonic()
    last = _grant_writes.get((developer_id, client_id))
    if last is not None and now - last < LAST_USED_RESOLUTION:
        return
    from oauth.models import Grant

    if len(_grant_writes) > 50_000:
        _grant_writes.clear()
    _grant_writes[(developer_id, client_id)] = now
    at = timezone.now()
    Grant.objects.filter(developer_id=developer_id, client_id=client_id).exclude(
        last_used_at__gte=at - datetime.timedelta(seconds=LAST_USED_RESOLUTION)
    ).update(last_used_at=at)


WRONG_AUDIENCE = (
    "This access token was issued for another resource, not this MCP server. Sign in again from your MCP client."
)


def invalid_token(*, expired: bool = False) -> KeyRefused:
    if expired:
        return KeyRefused(KeyRefused.INVALID_KEY, "This access token has expired. Your MCP client refreshes it.")
    return KeyRefused(
        KeyRefused.INVALID_KEY,
        "This access token is not valid (revoked, signed out, or never issued). Sign in again from your MCP client.",
    )


def developer_standing(developer_id: uuid.UUID) -> KeyRefused | None:
    """Why the key check would refuse this developer right now (the same code and message), or None. Sign-in and
    consent ask this: a developer who could not use a key cannot sign in either."""
    row = Developer.objects.with_seat_rank().filter(pk=developer_id).values_list(*DEVELOPER_CHECK_FIELDS).first()
    if row is None:
        return invalid_token()
    return developer_refusal(DeveloperRow(*row))
