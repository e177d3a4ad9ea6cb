"""The token check: an OAuth access token → the developer's `Principal`, under exactly the key check's refusal rules.

The credential backend of access tokens (`TokenBackend`) behind the door `accounts.credentials.authenticate`. It
shares the developer part of the key check (`accounts.developer_check`): the same developer columns and seat rank,
read by name (`DeveloperRow`), in one statement compiled once per connection and kept prepared on PostgreSQL, the same
refusal rules and messages (`developer_refusal`), and the same ≤ 1 s per-process memory (`accounts.check_cache`,
under the token's checksum), which every write through `accounts.services` clears. So a revocation, deactivation,
status or seat change, and a staff "sign out", reach tokens and keys alike within a second on every worker.

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
from typing import NamedTuple

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import DateTimeField, F, Value
from django.utils import timezone

from accounts import check_cache
from accounts.credentials import OAUTH, Caller
from accounts.developer_check import (
    DEVELOPER_FIELDS,
    HASH_PLACEHOLDER,
    DeveloperRow,
    Statement,
    compile_query,
    developer_refusal,
    developer_row,
    fetch_row,
    prepared,
    principal_of,
)
from accounts.exceptions import KeyRefused
from accounts.models import Developer
from infra import metrics
from infra.db import BOOKKEEPING, SharedReads

LAST_USED_RESOLUTION = 60.0  # seconds: a grant's last use is written at most once a minute per process


class _TokenRow(NamedTuple):
    """What the token check reads of the token itself (`_TOKEN_FIELDS`)."""

    token_expires: datetime.datetime | float  # a POSIX timestamp on PostgreSQL (`_token_check_statement`)
    resource: list[str] | None
    client_id: int


_TOKEN_FIELDS = {"token_expires": "expires", "resource": "resource", "client_id": "application_id"}
_KEY_ONLY_FIELDS = ("last_used_at",)  # fields of the developer part a token check never reads
_MAX_TOKEN_LENGTH = 512


def mcp_resource() -> str:
    """The canonical URL of `/mcp` (RFC 8707 resource, RFC 9728 `resource`): what tokens must be bound to."""
    return settings.HOTCROSS_PUBLIC_URL + "/mcp"


@dataclass(frozen=True, slots=True)
class _CheckedToken:
    """What the token check remembers for up to a second: the outcome, and the token's expiry."""

    caller: Caller | None
    refusal: tuple[str, str] | None
    expires_at: float | None  # a POSIX timestamp: compared with time.time(), cheaper than timezone.now()


class TokenBackend:
    """The credential backend of OAuth access tokens (`accounts.credentials`). An access token has no shape of its
    own (django-oauth-toolkit's are random strings): every credential the backends listed before this one do not
    recognize is taken for a token, so it comes after the key backend in `HOTCROSS_CREDENTIAL_BACKENDS`."""

    kind = OAUTH

    def recognizes(self, credential: str) -> bool:
        return True

    def authenticate(self, credential: str) -> Caller:
        return authenticate_token(credential)

    async def aauthenticate(self, credential: str) -> Caller:
        return await aauthenticate_token(credential)


def token_checksum(raw_token: str) -> str:
    """How django-oauth-toolkit finds a token (`token_checksum`: SHA-256 hex of the token)."""
    return hashlib.sha256(raw_token.encode("utf-8")).hexdigest()


def authenticate_token(raw_token: str) -> Caller:
    """The developer an access token was issued to and its client, or `KeyRefused` (the key check's codes)."""
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


async def aauthenticate_token(raw_token: str) -> Caller:
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


def _outcome(checked: _CheckedToken) -> Caller:
    if checked.refusal is not None:
        raise KeyRefused(*checked.refusal)
    if checked.expires_at is not None and checked.expires_at <= time.time():
        raise invalid_token(expired=True)
    assert checked.caller is not None
    return checked.caller


def _check_in_database(checksum: str) -> _CheckedToken:
    connection = connections[DEFAULT_DB_ALIAS]
    statement = prepared(connection, "oauth_token", _token_check_statement)
    row = fetch_row(connection, statement, checksum)
    if row is None:
        raise invalid_token()
    found, token = statement.read(row, DeveloperRow), statement.read(row, _TokenRow)
    if list(token.resource or []) != [mcp_resource()]:  # this server's MCP resource, and no other audience (RFC 8707)
        checked = _CheckedToken(None, (KeyRefused.INVALID_KEY, WRONG_AUDIENCE), None)
    else:
        refusal = developer_refusal(found)
        caller = None
        if refusal is None:
            client_id = token.client_id
            caller = Caller(principal_of(found), OAUTH, client_id, _client_name(client_id))
            _touch_grant(found.developer_id, client_id)
        expires = token.token_expires
        expires_at = expires.timestamp() if isinstance(expires, datetime.datetime) else expires
        checked = _CheckedToken(caller, None if refusal is None else (refusal.code, refusal.message), expires_at)
    check_cache.put("oauth:" + checksum, checked)
    return checked


_cold_checks = SharedReads(BOOKKEEPING, _check_in_database)


def _token_check_statement(connection: BaseDatabaseWrapper) -> Statement:
    """The token check's one statement (kept prepared on PostgreSQL like the key check's): the token found by its
    checksum, joined straight to its developer's part (`DEVELOPER_FIELDS`), every column named.

    The ORM can only reach a token from a developer through the shadow user's row (`auth_user`), which the check
    never reads; joining the token to `DeveloperAccount.user_id` instead saves a lookup on every cold check. So the
    developer part is the key check's query (the ORM's SQL, with its converters), as a subquery the database
    flattens into the join. The one column only the key needs (its last use) comes back as NULL (the key's expiry
    is read: it ends the developer's tokens too), and PostgreSQL gives the token's expiry as a POSIX timestamp:
    building a datetime from a row costs more than a lookup.
    """
    from oauth2_provider.models import get_access_token_model

    unread = {name: f"unread_{name}" for name in _KEY_ONLY_FIELDS}
    developers = Developer.objects.with_seat_rank().filter(oauth_account__isnull=False)
    developers = developers.annotate(
        token_user_id=F("oauth_account__user_id"),
        **{alias: Value(None, output_field=DateTimeField()) for alias in unread.values()},
    )
    developer_fields = {**DEVELOPER_FIELDS, **unread, "token_user_id": "token_user_id"}
    dev_sql, dev_params, compiler, converters = compile_query(connection, developers, developer_fields)
    access_token = get_access_token_model()
    *_, token_converters = compile_query(connection, access_token.objects.all(), _TOKEN_FIELDS)
    columns = (*developer_fields, *_TOKEN_FIELDS)  # `d.*`, then the token's own
    offset = len(developer_fields)
    converters = {**converters, **{i + offset: c for i, c in token_converters.items()}}
    quote = connection.ops.quote_name
    # Names from the models, quoted; the values are parameters.
    table = quote(access_token._meta.db_table)

    def column(path: str) -> str:
        return f"t.{quote(access_token._meta.get_field(path).column)}"

    user, checksum = column("user"), column("token_checksum")
    token_columns = {name: column(path) for name, path in _TOKEN_FIELDS.items()}
    if connection.vendor == "postgresql":
        token_columns["token_expires"] = f"EXTRACT(EPOCH FROM {token_columns['token_expires']})::float8"
        converters.pop(columns.index("token_expires"), None)
    sql = f"SELECT d.*, {', '.join(token_columns.values())} FROM ({dev_sql}) d INNER JOIN {table} t"  # noqa: S608
    sql += f" ON {user} = d.{quote('token_user_id')} WHERE {checksum} = %s"
    params = [*dev_params, HASH_PLACEHOLDER]
    return Statement(sql, params, len(params) - 1, compiler, converters, columns)


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
    found = developer_row(developer_id)
    if found is None:
        return invalid_token()
    return developer_refusal(found)
