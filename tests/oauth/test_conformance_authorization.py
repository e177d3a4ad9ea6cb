"""The official MCP conformance suite's authorization-server scenarios (`@modelcontextprotocol/conformance`, its
`authorization` command; the version pinned in package.json) against a real server, as CI runs them.

The pinned runner has two: `authorization-server-metadata-endpoint` (RFC 8414 metadata at the issuer's well-known
URL: status, JSON, the required fields, S256, the issuer equal to the URL given, CIMD support) and
`authorization-code-grant` (a public client with PKCE and the RFC 8707 resource: the authorization response at the
redirect URI with one code, the state and the RFC 9207 iss; the token response: 200, JSON, `Cache-Control: no-store`,
access_token and token_type). The second prints an authorization URL for a person to open and waits for the redirect
on its own callback server (127.0.0.1:<port>/callback); here the test is that person: it signs the developer in with
their key over HTTP and presses Allow, then follows the redirect to the runner, which exchanges the code.

The runner and its Node.js 22: `tests.support.conformance`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from urllib.parse import urljoin

import httpx2
import pytest

from tests.factories import DeveloperFactory
from tests.support.conformance import RUNNER_COMMAND, conformance_available, scenario_checks
from tests.support.oauth import OAuthServer, run_oauth_server
from tests.support.servers import RunningServer, serve_command

# Every authorization-server scenario of the pinned runner (`conformance list --authorization`): a new version with
# more fails here until they are looked at.
SCENARIOS = {"authorization-server-metadata-endpoint", "authorization-code-grant"}


pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not conformance_available(), reason="MCP conformance runner or Node.js 22 not installed"),
]


@pytest.fixture(scope="module")
def conformance_server(django_db_setup, tmp_path_factory) -> Iterator[OAuthServer]:
    """`run_oauth_server`, as the session's `oauth_server` but a process of its own: allowing a client writes the
    admin history, whose content type a server process remembers, and the flush after every transactional test makes
    the content types again under new ids. On a server where another test allowed first (test_end_to_end.py), the
    Allow here would fail with a 500 (FOREIGN KEY constraint failed), and the other way round."""
    with run_oauth_server(tmp_path_factory.mktemp("conformance-server")) as server:
        yield server


class HiddenFields(HTMLParser):
    """The hidden inputs of each form of a page (what a browser sends back), by the form's id."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.forms: dict[str, dict[str, str]] = {}
        self._form: dict[str, str] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "form":
            self._form = self.forms.setdefault(found.get("id") or "", {})
        elif tag == "input" and self._form is not None and found.get("type") == "hidden" and found.get("name"):
            self._form[found["name"]] = found.get("value") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None


def register_loopback_client(server: OAuthServer) -> str:
    """A public client registered as a native app would (RFC 7591): its redirect URI is on 127.0.0.1 without a port,
    so the runner's callback server may listen on any port (RFC 8252 §7.3)."""
    metadata = {
        "client_name": "MCP conformance suite",
        "redirect_uris": ["http://127.0.0.1/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }
    response = httpx2.post(f"{server.base}/oauth/register/", json=metadata, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()["client_id"]


def authorization_url(runner: RunningServer, server: OAuthServer) -> str:
    """The URL the runner asks a person to open (printed before its callback server listens)."""
    found = re.search(rf"^({re.escape(server.base)}/oauth/authorize/\?\S+)$", runner.log(), re.MULTILINE)
    assert found, runner.log()
    return found.group(1)


def sign_in_and_allow(key: str, url: str) -> str:
    """What the developer does in the browser: open the URL, sign in with their key, press Allow. The redirect to the
    client's callback, with the code (or the error the runner then reports)."""
    with httpx2.Client(timeout=30) as browser:
        to_sign_in = browser.get(url)
        assert to_sign_in.status_code == 302, to_sign_in.text
        page = browser.get(urljoin(url, to_sign_in.headers["Location"]))
        assert page.status_code == 200, page.text
        signed_in = browser.post(str(page.url), data={**HiddenFields(page.text).forms["key-form"], "key": key})
        assert signed_in.status_code == 302, signed_in.text
        consent = browser.get(urljoin(url, signed_in.headers["Location"]))
        if consent.status_code == 302:  # an error sent back to the client (RFC 6749 §4.1.2.1): the runner reports it
            return consent.headers["Location"]
        assert consent.status_code == 200, consent.text
        allowed = browser.post(
            str(consent.url), data={**HiddenFields(consent.text).forms["authorizationForm"], "allow": "Allow"}
        )
        assert allowed.status_code == 302, allowed.text
        return allowed.headers["Location"]


def test_the_authorization_scenarios_of_the_pinned_conformance_suite_pass(conformance_server, tmp_path):
    developer = DeveloperFactory()
    client_id = register_loopback_client(conformance_server)
    results = tmp_path / "results"
    command = [
        *RUNNER_COMMAND,
        "authorization",
        "--url",
        conformance_server.base,  # the issuer (HOTCROSS_PUBLIC_URL)
        "--client-id",
        client_id,
        "--resource",
        conformance_server.url,  # the MCP server the token is for, as the protected resource metadata names it
        "--port",
        "{port}",
        "--output-dir",
        f"{results}/{{port}}",  # one folder per attempt
    ]
    # The runner binds its callback port itself: `serve_command` gives it a free one (another if it was taken) and
    # yields once it listens, which is when the authorization scenario waits for the developer.
    with serve_command(command, tmp_path) as runner:
        callback = sign_in_and_allow(developer.plain_key, authorization_url(runner, conformance_server))
        assert callback.startswith(f"{runner.base}/callback?"), callback
        assert httpx2.get(callback, timeout=30).status_code == 200  # the runner then asks for the token
        exit_code = runner.process.wait(timeout=60)
        log = runner.log()

    checks = scenario_checks(results / str(runner.port), "authorization-server")
    assert set(checks) == SCENARIOS, log
    not_passed = [  # a FAILURE, a WARNING (CIMD support) or a SKIPPED (no client id) alike
        f"{scenario}: {check['id']} {check['status']}: {check.get('errorMessage') or check['description']}"
        for scenario, its_checks in sorted(checks.items())
        for check in its_checks
        if check["status"] != "SUCCESS"
    ]
    assert not not_passed, "\n".join(not_passed) + "\n\n" + log
    assert all(checks.values()), log  # every scenario checked something
    assert exit_code == 0, log
