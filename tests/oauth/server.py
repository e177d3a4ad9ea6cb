"""A real uvicorn for the OAuth end-to-end tests: like `tests.mcp_bridge.conftest.run_uvicorn`, but its public URL
(`HOTCROSS_PUBLIC_URL`, the issuer and the `/mcp` resource) is the address it listens on, its mail goes to files
(`filemail://`, read back by the tests), and Client ID Metadata Documents on 127.0.0.1 are allowed."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.mcp_bridge.conftest import ROOT, RunningServer, _wait_until_serving, server_env


@dataclass
class OAuthServer(RunningServer):
    mail_dir: Path = Path()

    def latest_code(self, email: str, timeout: float = 10) -> str:
        """The sign-in code in the newest mail to `email`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for path in sorted(self.mail_dir.glob("*.log"), key=lambda p: p.stat().st_mtime, reverse=True):
                text = path.read_text(errors="replace")
                if f"To: {email}" in text:
                    match = re.findall(r"sign-in code is (\d{6})", text)
                    if match:
                        return match[-1]
            time.sleep(0.1)
        raise AssertionError(f"no sign-in mail to {email} in {self.mail_dir}")


@contextlib.contextmanager
def run_oauth_server(log_dir: Path, **env: str) -> Iterator[OAuthServer]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    mail_dir = log_dir / f"mail-{port}"
    mail_dir.mkdir()
    log_path = log_dir / f"uvicorn-{port}.log"
    settings = {
        "HOTCROSS_PUBLIC_URL": base,
        "EMAIL_URL": f"filemail:///{mail_dir}",  # django-environ drops one slash: filemail:////abs/path
        "HOTCROSS_OAUTH_CIMD_ALLOW_LOOPBACK": "true",
        **env,
    }
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "uvicorn", "hotcross.asgi:application"),
                *("--fd", str(sock.fileno()), "--no-access-log", "--log-level", "warning"),
            ],
            pass_fds=[sock.fileno()],
            env=server_env(**settings),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    sock.close()
    server = OAuthServer(base, process, log_path, mail_dir=mail_dir)
    try:
        _wait_until_serving(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def issue_token(developer, resource: str, *, client_name: str = "Direct client") -> str:
    """An access token for `developer`, bound to `resource`, as the token endpoint would store it (checksum only)."""
    import datetime
    import secrets

    from django.utils import timezone
    from oauth2_provider.models import get_access_token_model, get_application_model

    from accounts.services import grants

    client = get_application_model().objects.create(
        name=client_name,
        client_type="public",
        authorization_grant_type="authorization-code",
        redirect_uris="http://127.0.0.1:9/cb",
    )
    grants.record_grant(developer=developer, client=client)
    token = secrets.token_urlsafe(30)
    get_access_token_model().objects.create(
        user=grants.shadow_user(developer=developer),
        application=client,
        token=token,
        expires=timezone.now() + datetime.timedelta(hours=1),
        scope="mcp",
        resource=[resource],
    )
    return token
