"""A real uvicorn for the OAuth end-to-end tests (`tests.servers`): like `tests.mcp_bridge.conftest.run_uvicorn`, but
its public URL (`HOTCROSS_PUBLIC_URL`, the issuer and the `/mcp` resource) is the address it listens on, its mail goes
to files (`filemail://`, read back by the tests), and Client ID Metadata Documents on 127.0.0.1 are allowed."""

from __future__ import annotations

import contextlib
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.mcp_bridge.conftest import server_env
from tests.servers import RunningServer, serve_asgi


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
    mail_dir = Path(tempfile.mkdtemp(prefix="mail-", dir=log_dir))

    def environment(base: str) -> dict[str, str]:
        return server_env(
            HOTCROSS_PUBLIC_URL=base,
            EMAIL_URL=f"filemail:///{mail_dir}",  # django-environ drops one slash: filemail:////abs/path
            HOTCROSS_OAUTH_CIMD_ALLOW_LOOPBACK="true",
            **env,
        )

    def server(base: str, process: subprocess.Popen, log_path: Path) -> OAuthServer:
        return OAuthServer(base, process, log_path, mail_dir=mail_dir)

    with serve_asgi(log_dir, environment, server) as running:
        yield running


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
