"""The usage spool: a server that stops while the database is unreachable keeps the answered calls' usage events in a
file, and the next start (or `manage.py usage_spool load`) writes them. Usage rows = calls answered."""

from __future__ import annotations

import datetime
import io
import json
import time

import anyio
import httpx2
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from accounts.models import UsageEvent
from accounts.services.usage_spool import spill_usages, spooled_usages
from tests.factories import DeveloperFactory
from tests.support.mcp import database_url, mcp_error, run_uvicorn, stdio_session

pytestmark = pytest.mark.django_db(transaction=True)


def call_of(developer, tool: str = "echo", *, ok: bool = True, **extra) -> dict:
    return {
        "developer_id": developer.id,
        "organization_id": developer.organization_id,
        "tool_name": tool,
        "ok": ok,
        "duration_ms": 3,
        "created_at": timezone.now() - datetime.timedelta(minutes=1),
        **extra,
    }


def command(*args: str) -> str:
    out = io.StringIO()
    call_command("usage_spool", *args, stdout=out)
    return out.getvalue()


def test_spooled_events_are_shown_then_loaded_once_and_unreadable_lines_stay(tmp_path):
    spool = tmp_path / "spool" / "usage.jsonl"
    developer = DeveloperFactory()
    gone = DeveloperFactory()
    gone_call = call_of(gone, "ping")
    spill_usages([call_of(developer), call_of(developer, "fail", ok=False)], spool)
    spill_usages([gone_call], spool)
    with open(spool, "a") as file:
        file.write('{"developer_id": "not json\n[[[[\n')
    gone.delete()

    shown = json.loads(command("show", "--path", str(spool), "--json"))
    assert shown["events"] == 3
    assert shown["unreadable_lines"] == 2
    assert shown["by_tool"] == {"echo": 1, "fail": 1, "ping": 1}
    assert "3 usage events waiting" in command("show", "--path", str(spool))

    loaded = command("load", "--path", str(spool))
    assert "2 usage events written, 1 dropped" in loaded
    assert "2 unreadable lines kept in the file" in loaded
    assert sorted(UsageEvent.objects.values_list("tool_name", "ok")) == [("echo", True), ("fail", False)]
    assert spooled_usages(spool).calls == []
    assert spooled_usages(spool).unreadable == 2
    assert "0 usage events written" in command("load", "--path", str(spool))  # a second load writes nothing again
    assert UsageEvent.objects.count() == 2


def test_a_spool_file_holds_no_key_material(tmp_path):
    spool = tmp_path / "usage.jsonl"
    developer = DeveloperFactory()
    spill_usages([call_of(developer)], spool)
    text = spool.read_text()
    assert developer.plain_key not in text
    assert developer.api_key_hash not in text
    assert developer.api_key_prefix not in text
    assert set(json.loads(text)) == {"developer_id", "organization_id", "tool_name", "ok", "duration_ms", "created_at"}


def test_a_spool_that_cannot_be_read_is_one_line(tmp_path):
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(CommandError, match="Cannot use the usage spool"):
        command("load", "--path", str(tmp_path / "dir.jsonl"))
    assert "0 usage events waiting" in command("show", "--path", str(tmp_path / "missing.jsonl"))


@pytest.mark.postgres_only
def test_a_stop_while_the_database_is_down_spools_and_the_next_start_writes_them(tmp_path, db_proxy):
    developer = DeveloperFactory()
    spool = tmp_path / "usage-spool.jsonl"
    env = {
        "DATABASE_URL": database_url(host="127.0.0.1", port=db_proxy.port),
        "HOTCROSS_USAGE_SPOOL": str(spool),
        "HOTCROSS_MCP_METERING_FLUSH_SECONDS": "5",  # the events are still buffered when the database goes
        "DATABASE_POOL_TIMEOUT": "1",
    }
    headers = {"Authorization": f"Bearer {developer.plain_key}", "Accept": "application/json, text/event-stream"}

    def ping(server, n: int) -> httpx2.Response:
        body = {"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": {"name": "ping", "arguments": {}}}
        return httpx2.post(server.url, json=body, headers=headers, timeout=30)

    with run_uvicorn(tmp_path, **env) as server:
        assert ping(server, 0).status_code == 200  # the key check is remembered for a second
        db_proxy.cut()
        answers = [ping(server, n) for n in range(1, 6)]  # from the key memory, while it lasts
        answered = 1 + sum(1 for r in answers if r.status_code == 200 and "result" in r.json())
        first_log = server.log_path
    # uvicorn got SIGTERM with the database unreachable: its stop spooled the buffered events.
    log = first_log.read_text()
    assert "Traceback" not in log
    assert "usage events spooled to" in log
    assert len(spool.read_text().splitlines()) == answered >= 2
    assert not UsageEvent.objects.exists()

    db_proxy.restore()
    with run_uvicorn(tmp_path, **env) as server:
        assert UsageEvent.objects.filter(developer=developer, tool_name="ping").count() == answered
        assert spool.read_text() == ""
        assert "Traceback" not in server.log()


@pytest.mark.postgres_only
def test_a_stdio_session_ending_while_the_database_is_down_spools_and_the_next_session_writes_them(tmp_path, db_proxy):
    developer = DeveloperFactory()
    spool = tmp_path / "usage-spool.jsonl"
    env = {
        "DATABASE_URL": database_url(host="127.0.0.1", port=db_proxy.port),
        "HOTCROSS_USAGE_SPOOL": str(spool),
        "HOTCROSS_MCP_METERING_FLUSH_SECONDS": "5",
        "DATABASE_POOL_TIMEOUT": "1",
    }

    async def session(calls: int) -> int:
        answered = 0
        with open(tmp_path / "stderr", "a") as errlog:
            async with stdio_session(developer.plain_key, errlog, **env) as client:
                await client.call_tool("ping", {})  # the key check is remembered for a second
                answered += 1
                if calls:
                    db_proxy.cut()
                for _ in range(calls):
                    try:
                        result = await client.call_tool("ping", {})
                    except Exception as exc:  # refused once the key memory is gone: not answered, not metered
                        assert mcp_error(exc).data["code"] == "service_unavailable"
                    else:
                        answered += not result.is_error
        return answered

    answered = anyio.run(session, 5)
    # The SDK's client closed the session, and terminates a server still running 2 s later: the spool came first.
    assert len(spool.read_text().splitlines()) == answered >= 2
    assert not UsageEvent.objects.exists()

    db_proxy.restore()
    anyio.run(session, 0)  # its start writes the spool; its own call is written when it ends
    deadline = time.monotonic() + 5
    while UsageEvent.objects.count() < answered + 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert UsageEvent.objects.filter(developer=developer, tool_name="ping").count() == answered + 1
    assert spool.read_text() == ""
    assert "Traceback" not in (tmp_path / "stderr").read_text()
