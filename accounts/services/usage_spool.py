"""The usage spool: events a stopping server could not write (the database unreachable) are appended to a JSON-lines
file (`HOTCROSS_USAGE_SPOOL`) by `spill_usages`, and written to the database by `load_spooled_usages` (at the next start
of a server, or `manage.py usage_spool load`) through `accounts.services.usage.record_usages`. A line holds only the
event's columns: ids, tool name, outcome, duration and time (no key, no arguments). Writers and loaders of one file
take turns (an exclusive `flock`), so the workers of one host can share it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import json
import logging
import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.utils import timezone

from accounts.exceptions import AccountsError
from accounts.services.usage import UsageCall, record_usages, usage_values

logger = logging.getLogger(__name__)

_SPOOL_BATCH = 1_000  # events per INSERT when loading


@dataclasses.dataclass(frozen=True)
class SpoolContents:
    """What a spool file holds: the events it can give back, and how many of its lines are unreadable."""

    path: Path
    calls: list[UsageCall]
    unreadable: int


@dataclasses.dataclass(frozen=True)
class SpoolLoad:
    """What `load_spooled_usages` did: events written, dropped (their developer no longer exists, or invalid), and
    unreadable lines left in the file for a person to look at."""

    path: Path
    written: int
    dropped: int
    unreadable: int


def spool_path(path: str | os.PathLike[str] | None = None) -> Path:
    return Path(path if path is not None else settings.HOTCROSS_USAGE_SPOOL)


def spill_usages(calls: Sequence[UsageCall], path: str | os.PathLike[str] | None = None) -> Path:
    """Append `calls` to the spool file (created with its folder when missing), for `load_spooled_usages` to write
    later. Raises `OSError` when the file cannot be written (nothing appended then, or the whole batch)."""
    target = spool_path(path)
    lines = "".join(json.dumps(_spool_record(call), separators=(",", ":")) + "\n" for call in calls)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target, "a") as file:
        file.write(lines)
        file.flush()
        os.fsync(file.fileno())
    return target


def spooled_usages(path: str | os.PathLike[str] | None = None) -> SpoolContents:
    """The events waiting in the spool file (none when there is no file)."""
    target = spool_path(path)
    if not target.exists():
        return SpoolContents(target, [], 0)
    with _locked(target, "r") as file:
        calls, unreadable = _parse(file)
    return SpoolContents(target, calls, len(unreadable))


def load_spooled_usages(path: str | os.PathLike[str] | None = None) -> SpoolLoad:
    """Write the spooled events to the database (one INSERT per thousand) and empty the spool.

    Unreadable lines stay in the file. When the database cannot be reached, the events not yet written stay in the
    file and `OperationalError` is raised. Events whose developer no longer exists are dropped, as metering does.
    """
    target = spool_path(path)
    if not target.exists():
        return SpoolLoad(target, 0, 0, 0)
    with _locked(target, "r+") as file:
        calls, unreadable = _parse(file)
        written = dropped = 0
        try:
            for start in range(0, len(calls), _SPOOL_BATCH):
                batch = calls[start : start + _SPOOL_BATCH]
                outcomes = record_usages(batch)
                for call, outcome in zip(batch, outcomes, strict=True):
                    if outcome is None:
                        written += 1
                    else:
                        dropped += 1
                        logger.error("spooled usage event dropped developer=%s: %s", call.get("developer_id"), outcome)
        finally:
            # What is written leaves the file; what is not (an outage midway, unreadable lines) stays.
            rest = [json.dumps(_spool_record(call), separators=(",", ":")) for call in calls[written + dropped :]]
            file.seek(0)
            file.truncate()
            file.write("".join(line + "\n" for line in [*rest, *unreadable]))
            file.flush()
            os.fsync(file.fileno())
    if written or dropped:
        logger.warning("usage spool %s: %s events written, %s dropped", target, written, dropped)
    return SpoolLoad(target, written, dropped, len(unreadable))


@contextlib.contextmanager
def _locked(path: Path, mode: str) -> Iterator[IO[str]]:
    with open(path, mode, encoding="utf-8") as file:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX)
        try:
            yield file
        finally:
            fcntl.flock(file.fileno(), fcntl.LOCK_UN)


def _spool_record(call: UsageCall) -> dict[str, Any]:
    created_at = call.get("created_at") or timezone.now()
    return {
        "developer_id": str(call["developer_id"]),
        "organization_id": str(call["organization_id"]),
        "tool_name": call["tool_name"],
        "ok": bool(call["ok"]),
        "duration_ms": call["duration_ms"],
        "created_at": created_at.isoformat(),
    }


def _parse(file: IO[str]) -> tuple[list[UsageCall], list[str]]:
    """The spool's events, and its unreadable lines as they are."""
    calls: list[UsageCall] = []
    unreadable: list[str] = []
    for line in file:
        line = line.rstrip("\n")
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            call: UsageCall = {
                "developer_id": uuid.UUID(record["developer_id"]),
                "organization_id": uuid.UUID(record["organization_id"]),
                "tool_name": record["tool_name"],
                "ok": record["ok"],
                "duration_ms": record["duration_ms"],
                "created_at": datetime.datetime.fromisoformat(record["created_at"]),
            }
            usage_values(**call)  # the writer's own validation: an invalid event is unreadable here, kept in the file
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError, AccountsError):
            unreadable.append(line)
            continue
        calls.append(call)
    if unreadable:
        logger.warning("usage spool: %s unreadable lines kept", len(unreadable))
    return calls, unreadable
