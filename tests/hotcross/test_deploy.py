"""Production HTTPS settings: `manage.py check --deploy` with the production environment of docs/operations.md prints no
warning, and
the SSL redirect leaves /healthz, /mcp and the Stripe webhook endpoint reachable as they must be."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.test import Client

from tests.support.serve import serving

ROOT = Path(__file__).resolve().parents[2]

OPERATIONS = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
# The placeholders in the production block, with values that work here.
FILLED = {
    "SECRET_KEY": "a-production-secret-key-of-fifty-or-more-random-characters-0123456789",
    "STRIPE_LIVE_SECRET_KEY": "sk_live_" + "x" * 99,
}


def readme_production_block() -> dict[str, str]:
    """docs/operations.md, "Configuration" → "Production": the variables a production deployment sets, as printed (a `…`
    placeholder filled from FILLED; DATABASE_URL is the test's)."""
    block = OPERATIONS.split("**Production.**", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    variables = {}
    for line in block.splitlines():
        name, _, value = line.split("  #")[0].strip().partition("=")
        if name and name != "DATABASE_URL":
            variables[name] = FILLED[name] if "…" in value else value
    return variables


PRODUCTION = readme_production_block()


def production_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """A checkout that already ran `make run` (its development .env, DEBUG=true), with the production block set
    in the environment on top, as printed."""
    drop = ("DJANGO_", "HOTCROSS_", "DATABASE_", "SECURE_", "STRIPE_", "SESSION_", "CSRF_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.pop("DEBUG", None)
    development = tmp_path / ".env"
    development.write_text("DEBUG=true\nSECRET_KEY=development-only\nHOTCROSS_PUBLIC_URL=http://127.0.0.1:8000\n")
    env.update(DOTENV_FILE=str(development), DATABASE_URL=f"sqlite:///{tmp_path}/deploy.sqlite3")
    env.update(PRODUCTION)
    env.update(overrides)
    return env


def check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_with_the_production_environment_is_clean(tmp_path):
    result = check_deploy(production_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNING" not in result.stdout + result.stderr


def test_turning_the_https_settings_off_brings_the_warnings_back(tmp_path):
    off = {
        "SECURE_SSL_REDIRECT": "false",
        "SECURE_HSTS_SECONDS": "0",
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
    }
    result = check_deploy(production_env(tmp_path, **off))
    for code in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert code in result.stderr + result.stdout


@pytest.fixture
def https_on(settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.ALLOWED_HOSTS = ["backoffice.example.com"]


@pytest.mark.django_db
def test_plain_http_is_redirected_except_healthz(https_on):
    client = Client(HTTP_HOST="backoffice.example.com")
    admin = client.get("/admin/login/")
    assert admin.status_code == 301 and admin["Location"] == "https://backoffice.example.com/admin/login/"
    assert client.get("/healthz").status_code == 200  # load balancers probe over plain HTTP
    # Behind the proxy, a request that came in over HTTPS is served.
    assert client.get("/admin/login/", HTTP_X_FORWARDED_PROTO="https").status_code == 200


@pytest.mark.django_db
def test_the_webhook_endpoint_is_reached_over_https(https_on):
    response = Client(HTTP_HOST="backoffice.example.com").post(
        "/stripe/webhook/00000000-0000-0000-0000-000000000000/",
        data="{}",
        content_type="application/json",
        HTTP_X_FORWARDED_PROTO="https",
    )
    assert response.status_code != 301  # dj-stripe's own answer (no such endpoint), not a redirect


def status(method: str, url: str) -> int:
    request = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None)  # noqa: S310
    request.add_header("Content-Type", "application/json")
    request.add_header("Accept", "application/json, text/event-stream")

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=20) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_with_production_https_defaults_mcp_and_healthz_are_not_redirected(tmp_path):
    # DEBUG off and nothing else said: the SSL redirect is on. /mcp is served beside Django and /healthz is exempt.
    with serving(tmp_path, SECURE_SSL_REDIRECT="true", ALLOWED_HOSTS="127.0.0.1") as server:  # up: /healthz is 200
        assert status("GET", f"{server.base}/admin/login/") == 301
        assert status("POST", f"{server.base}/mcp") == 401  # asks for a key, not for HTTPS
