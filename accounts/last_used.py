"""`api_key_last_used_at`, written behind: the key check only notes here that a developer's key was used (in memory,
no query), and the note is written later in one batch.

Who writes: the MCP bridge's metering flush (`mcp_bridge.metering`, with the usage events, on the same cadence), and,
in a process without one (a plain Django worker that checks keys), a short-lived background thread that writes what
is noted `WRITE_AFTER_SECONDS` later. The write (`record_last_used`, `arecord_last_used`: here, with the rule it keeps)
sets the time only for a key never used or last used over a minute (`RESOLUTION`) before, so the column changes at
most once a minute per developer, across every worker and machine. A note is per process; a hard kill loses at most
the last few seconds' notes (the next use notes again).
"""

from __future__ import annotations

import datetime
import functools
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping

from django.db import DatabaseError, InterfaceError, OperationalError
from django.db import connection as db_connection
from django.db.models import Q

from accounts.models import Developer
from infra.db import BOOKKEEPING, DatabaseUnavailable, aexecute, async_available, close_thread_connections, run_in_pool

logger = logging.getLogger(__name__)

RESOLUTION = datetime.timedelta(minutes=1)  # the column changes at most this often per developer
_RESOLUTION_SECONDS = int(RESOLUTION.total_seconds())
WRITE_AFTER_SECONDS = 1.0

_lock = threading.Lock()
_pending: dict[uuid.UUID, datetime.datetime] = {}
_writer: threading.Thread | None = None
# The background writer; tests turn it off and write with `write_pending()` (or enable it to test it).
background = True


def note(developer_id: uuid.UUID, at: datetime.datetime, last_written: datetime.datetime | None) -> None:
    """The key check saw `developer_id`'s key work at `at`; `last_written` is the column's value it read. Nothing to
    do when that is under a minute old."""
    if last_written is not None and at - last_written < RESOLUTION:
        return
    global _writer
    with _lock:
        previous = _pending.get(developer_id)
        if previous is None or previous < at:
            _pending[developer_id] = at
        if background and _writer is None:
            _writer = threading.Thread(target=_write_later, name="hotcross-last-used", daemon=True)
            _writer.start()


def pending() -> bool:
    return bool(_pending)


def take() -> dict[uuid.UUID, datetime.datetime]:
    """Every note, removed from memory (the caller writes them, or gives them back with `give_back`)."""
    global _pending
    with _lock:
        taken, _pending = _pending, {}
    return taken


def give_back(marks: dict[uuid.UUID, datetime.datetime]) -> None:
    """Notes a write could not make (the database unreachable): kept for the next write."""
    with _lock:
        for developer_id, at in marks.items():
            if developer_id not in _pending or _pending[developer_id] < at:
                _pending[developer_id] = at


def write_pending() -> int:
    """Write every note now (sync, the ORM); how many developers' column changed."""
    marks = take()
    if not marks:
        return 0
    try:
        return record_last_used(marks)
    except Exception:
        give_back(marks)
        raise


def clear() -> None:
    with _lock:
        _pending.clear()


def _write_later() -> None:
    """The background writer: every `WRITE_AFTER_SECONDS` while notes wait, then it ends (`note` starts another)."""
    global _writer
    while True:
        time.sleep(WRITE_AFTER_SECONDS)
        try:
            write_pending()
        except DatabaseError:
            logger.warning("key last-used times not written yet: the database cannot be reached")
        finally:
            close_thread_connections()
        with _lock:
            if not _pending or not background:
                _writer = None
                return


# --- the write: one statement for every note --------------------------------------------------------------------------


def record_last_used(marks: Mapping[uuid.UUID, datetime.datetime]) -> int:
    """Set `api_key_last_used_at` of each developer to its time, where the column is empty or over a minute older
    (concurrent writers, other workers: at most once a minute each). How many rows changed."""
    ordered = sorted(marks.items(), key=lambda item: str(item[0]))  # one lock order for every writer
    if db_connection.vendor == "postgresql" and ordered:
        with db_connection.cursor() as cursor:  # one statement, as the metering flush makes it
            cursor.execute(
                _last_used_sql(),
                [[developer_id for developer_id, _ in ordered], [at for _, at in ordered]],
            )
            return cursor.rowcount
    changed = 0
    for developer_id, at in ordered:
        changed += (
            Developer.objects.filter(pk=developer_id)
            .filter(Q(api_key_last_used_at__isnull=True) | Q(api_key_last_used_at__lt=at - RESOLUTION))
            .update(api_key_last_used_at=at)
        )
    return changed


async def arecord_last_used(marks: Mapping[uuid.UUID, datetime.datetime]) -> None:
    """`record_last_used` for async callers: on PostgreSQL one UPDATE from the event loop. Raises
    `DatabaseUnavailable` when the database cannot be reached (nothing written)."""
    if not marks:
        return
    if not async_available():
        await run_in_pool(BOOKKEEPING, record_last_used, marks)
        return
    ordered = sorted(marks.items(), key=lambda item: str(item[0]))
    try:
        await aexecute(
            _last_used_sql(),
            [
                _pg_array(str(developer_id) for developer_id, _ in ordered),
                _pg_array(at.isoformat() for _, at in ordered),
            ],
        )
    except (OperationalError, InterfaceError) as exc:
        raise DatabaseUnavailable() from exc


@functools.cache
def _last_used_sql() -> str:
    quote = db_connection.ops.quote_name
    table = quote(Developer._meta.db_table)
    column = quote(Developer._meta.get_field("api_key_last_used_at").column)
    pk = quote(Developer._meta.pk.column)
    return (
        f"UPDATE {table} SET {column} = noted.at FROM unnest(%s::uuid[], %s::timestamptz[]) AS noted(id, at) "  # noqa: S608
        f"WHERE {table}.{pk} = noted.id "
        f"AND ({table}.{column} IS NULL OR {table}.{column} < noted.at - interval '{_RESOLUTION_SECONDS} seconds')"
    )


def _pg_array(elements: Iterable[str]) -> str:
    """A PostgreSQL array literal of elements without commas, braces, quotes or spaces (UUIDs, ISO times), as
    `accounts.services.usage` writes its batches: cheaper than the driver's adaptation of a list."""
    return "{" + ",".join(elements) + "}"
