"""The bridge over stdio: the mcp SDK's client spawning `manage.py mcp_server` with HOTCROSS_API_KEY."""

from __future__ import annotations

import datetime
import subprocess
import sys
import time

import anyio
import pytest
from django.utils import timezone

from accounts import services
from accounts.models import UsageEvent
from tests.factories import DeveloperFactory, OrganizationFactory
from tests.support.mcp import (
    KEY_MEMORY_SECONDS,
    db,
    mcp_error,
    server_env,
    stdio_session,
    structured,
    usage_written,
)
from tests.support.servers import ROOT

pytestmark = pytest.mark.django_db(transaction=True)


def run_command(key: str | None) -> subprocess.CompletedProcess:
    env = server_env()
    if key is not None:
        env["HOTCROSS_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "manage.py", "mcp_server"],
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_lists_tools_and_calls_whoami_and_usage(tmp_path):
    developer = DeveloperFactory(first_name="Grace", last_name="Hopper")

    async def scenario():
        with open(tmp_path / "stderr", "w") as errlog:
            async with stdio_session(developer.plain_key, errlog) as client:
                tools = {t.name: t for t in (await client.list_tools()).tools}
                whoami = structured(await client.call_tool("whoami", {}))
                echo = structured(await client.call_tool("echo", {"text": "hi"}))
                token = structured(await client.call_tool("access_token", {}))
                usage = structured(await client.call_tool("usage", {}))
                return tools, whoami, echo, token, usage

    tools, whoami, echo, token, usage = anyio.run(scenario)
    assert {"whoami", "usage", "echo"} <= set(tools)
    assert "_developer_id" not in tools["echo"].input_schema["properties"]
    assert whoami["email"] == developer.email
    assert whoami["name"] == "Grace Hopper"
    assert whoami["organization_id"] == str(developer.organization_id)
    assert whoami["subscription_status"] == developer.organization.subscription_status
    assert (whoami["seats_used"], whoami["max_seats"]) == (1, developer.organization.max_seats)
    assert echo["developer_id"] == str(developer.id)
    # The SDK's get_access_token() names the caller over stdio exactly as over HTTP.
    assert token == {"client_id": str(developer.id), "organization_id": str(developer.organization_id)}
    assert usage["by_tool"] == {"whoami": 1, "echo": 1, "access_token": 1}
    assert usage["developer_calls"] == 3
    assert usage["organization_calls"] == 3
    usage_written(4)  # usage itself is recorded once answered
    assert UsageEvent.objects.filter(developer=developer).count() == 4


@pytest.mark.parametrize(
    ("key", "says"),
    [
        (None, "HOTCROSS_API_KEY is not set. Put your Hotcross key"),
        ("  ", "HOTCROSS_API_KEY is not set."),
        ("hc_live_" + "z" * 40, "invalid_key: This API key is not valid."),
        ("not-a-key", "invalid_key: This API key is not valid."),
    ],
)
def test_a_missing_or_unknown_key_exits_2_with_one_line_and_no_mcp_traffic(key, says):
    done = run_command(key)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert says in lines[0]


def test_the_mcp_client_with_a_wrong_key_fails_at_once_and_stderr_says_why(tmp_path):
    errlog_path = tmp_path / "stderr"

    async def scenario():
        with open(errlog_path, "w") as errlog, anyio.fail_after(60):
            async with stdio_session("hc_live_" + "w" * 40, errlog) as client:
                await client.list_tools()

    with pytest.raises(BaseException) as raised:
        anyio.run(scenario)
    assert mcp_error(raised.value).message == "Connection closed"  # the server exited before any MCP traffic
    assert errlog_path.read_text().strip().splitlines() == [
        "invalid_key: This API key is not valid. Check that you copied the whole key (it starts with hc_live_), "
        "or ask an administrator of your organization for a new one."
    ]


def test_a_refused_key_exits_2_with_the_refusal(tmp_path):
    org = OrganizationFactory(max_seats=1)
    DeveloperFactory(organization=org, seat_claimed_at=timezone.now() - datetime.timedelta(hours=1))
    beyond_the_seats = DeveloperFactory(organization=org)
    revoked = DeveloperFactory()
    services.revoke_key(developer=revoked)

    for developer, code in ((beyond_the_seats, "seat_limit_exceeded"), (revoked, "key_revoked")):
        done = run_command(developer.plain_key)
        assert done.returncode == 2
        assert done.stdout == ""
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith(f"{code}: ")


def _revoke(developer):
    services.revoke_key(developer=developer)


def _cancel(developer):
    services.set_status(organization=developer.organization, status="canceled")


def _deactivate(developer):
    services.deactivate_developer(developer=developer)


def _lose_seat(developer):
    services.set_seats(organization=developer.organization, max_seats=0)


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (_revoke, "key_revoked"),
        (_cancel, "subscription_inactive"),
        (_deactivate, "developer_inactive"),
        (_lose_seat, "seat_limit_exceeded"),
    ],
)
def test_a_change_mid_session_refuses_the_next_request(tmp_path, change, code):
    developer = DeveloperFactory()

    async def scenario():
        # The server remembers key checks for KEY_MEMORY_SECONDS (not the default second): the wait below is that long.
        memory = {"HOTCROSS_KEY_CACHE_SECONDS": str(KEY_MEMORY_SECONDS)}
        with open(tmp_path / "stderr", "w") as errlog:
            async with stdio_session(developer.plain_key, errlog, **memory) as client:
                before = structured(await client.call_tool("whoami", {}))
                await db(change, developer)
                started = time.monotonic()
                while True:
                    try:
                        await client.call_tool("whoami", {})
                    except Exception as exc:
                        refused = mcp_error(exc)
                        break
                    assert time.monotonic() - started < 3, "the change did not take effect"
                    await anyio.sleep(0.02)
                # The session survives a refusal: listing tools is refused the same way, not a crash.
                with pytest.raises(Exception) as listing:
                    await client.list_tools()
                return before, refused, time.monotonic() - started, mcp_error(listing.value)

    before, refused, after, listing = anyio.run(scenario)
    assert before["developer_id"] == str(developer.id)
    assert refused.code == -32001
    assert refused.data["code"] == code
    assert refused.message.startswith(f"{code}: ")
    assert listing.data["code"] == code
    assert after < 1.5
    usage_written(0)
    assert not UsageEvent.objects.filter(ok=False).exists()


def test_spoofed_caller_arguments_do_not_change_the_caller(tmp_path):
    developer = DeveloperFactory()
    other = DeveloperFactory()

    async def scenario():
        with open(tmp_path / "stderr", "w") as errlog:
            async with stdio_session(developer.plain_key, errlog) as client:
                spoof = {"_developer_id": str(other.id), "_organization_id": str(other.organization_id)}
                return structured(await client.call_tool("echo", {"text": "x", **spoof}))

    echo = anyio.run(scenario)
    assert echo["developer_id"] == str(developer.id)
    assert echo["organization_id"] == str(developer.organization_id)
    usage_written(1)
    assert list(UsageEvent.objects.values_list("developer_id", flat=True)) == [developer.id]


def test_the_last_calls_of_a_session_are_written_when_it_ends(tmp_path):
    """Events are buffered for a flush interval; the end of the session writes them at once."""
    developer = DeveloperFactory()

    async def scenario() -> float:
        with open(tmp_path / "stderr", "w") as errlog:
            async with stdio_session(developer.plain_key, errlog, HOTCROSS_MCP_METERING_FLUSH_SECONDS="5") as client:
                first_call = time.monotonic()
                for n in range(3):
                    await client.call_tool("echo", {"text": str(n)})
        return first_call

    # Timed from the first call, not from before the server's start: the interval's flush is set off by the first
    # event (mcp_bridge.metering) and comes 5 s after it at the soonest, while the start of `manage.py mcp_server`
    # (several seconds on a busy machine) has nothing to do with it.
    started = anyio.run(scenario)
    deadline = time.monotonic() + 3
    while UsageEvent.objects.count() < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert UsageEvent.objects.filter(developer=developer, tool_name="echo").count() == 3
    assert time.monotonic() - started < 5  # not by the 5-second flush: by the end of the session
