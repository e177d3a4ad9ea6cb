"""`api_key_last_used_at`, written behind: the key check only notes here that a developer's key was used (in memory,
no query), and the note is written later in one batch.

Who writes: the MCP bridge's metering flush (`mcp_bridge.metering`, with the usage events, on the same cadence), and,
in a process without one (a plain Django worker that checks keys), a short-lived background thread that writes what
is noted `WRITE_AFTER_SECONDS` later. The write (`accounts.services.usage.record_last_used`) sets the time only for a
key never used or last used over a minute before, so the column changes at most once a minute per developer, across
every worker and machine. A note is per process; a hard kill loses at most the last few seconds' notes (the next use
notes again).
"""

from __future__ import annotations

import datetime
import logging
import threading
import uuid

logger = logging.getLogger(__name__)

RESOLUTION = datetime.timedelta(minutes=1)  # the column changes at most this often per developer
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
    from accounts.services.usage import record_last_used

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
    import time

    from django.db import DatabaseError

    from infra.db import close_thread_connections

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
