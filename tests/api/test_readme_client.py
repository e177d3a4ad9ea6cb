"""The key-check API client example of docs/api.md (README's until issue 31), run as printed against a real server
(uvicorn serving hotcross.asgi): verify at start, report usage in batches (a retry is not counted twice), and a
revocation reaches the client within the max-age the server gave."""

from __future__ import annotations

import contextlib
import io
import time

import pytest

from accounts import services
from accounts.models import UsageEvent
from tests.factories import DeveloperFactory
from tests.support.servers import ROOT

pytestmark = pytest.mark.django_db(transaction=True)


def readme_example() -> tuple[str, str]:
    """The example's definitions and its last lines (the use), as docs/api.md prints them."""
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8").split("<!-- api-client-example -->", 1)[1]
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    definitions, use = code.split("\n# The back office's address", 1)
    return definitions, "# The back office's address" + use


def test_the_readme_client_verifies_reports_and_sees_a_revocation(mcp_http, monkeypatch):
    # The session's server (tests.support.mcp.MCP_HTTP_ENV) gives verify answers a max-age of 1 s and remembers key
    # checks for 0.1 s.
    developer = DeveloperFactory(organization__name="Acme Example")
    definitions, use = readme_example()
    namespace: dict = {}
    exec(compile(definitions, "docs/api.md", "exec"), namespace)  # noqa: S102 (the doc's own code is under test)
    # As printed (issue 31: its `"hc_live_…"` placeholder failed with a UnicodeEncodeError in the header): the address
    # and the key come from the environment.
    assert "…" not in use
    monkeypatch.setenv("HOTCROSS_URL", mcp_http.base)
    monkeypatch.setenv("HOTCROSS_API_KEY", developer.plain_key)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(use, "docs/api.md", "exec"), namespace)  # noqa: S102
    assert printed.getvalue().strip() == "Acme Example"
    assert UsageEvent.objects.filter(developer=developer, tool_name="search_code").count() == 1

    client = namespace["client"]
    for n in range(150):  # the 100th call reports a batch on its own
        client.record("index_repo", ok=n % 10 != 0, duration_ms=n)
    assert UsageEvent.objects.filter(developer=developer, tool_name="index_repo").count() == 100
    pending = list(client.events)
    client.flush()
    client.events = pending  # as if the answer had been lost: the same ids again
    client.flush()
    assert UsageEvent.objects.filter(developer=developer, tool_name="index_repo").count() == 150
    assert UsageEvent.objects.filter(developer=developer, tool_name="index_repo", ok=False).count() == 15

    services.revoke_key(developer=developer)
    deadline = time.monotonic() + 1 + 1 + 0.5  # the answer's max-age, the server's key-check memory, slack
    with pytest.raises(PermissionError, match=r"^key_revoked: This API key was revoked"):
        while time.monotonic() < deadline:
            client.principal()
            time.sleep(0.02)
