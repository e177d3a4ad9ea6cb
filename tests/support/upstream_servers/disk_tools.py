"""An upstream MCP server that behaves like today's real Hotcross server where it matters to the gateway: it keeps
its data under `$HOME` (it ignores `HOTCROSS_DATA_DIR`), a write takes an exclusive lock on its folder and fails
when another process holds it, one tool reads any path it is given (the real one passes raw SQL with `file()` to its
embedded engine) and one fetches any URL, and one answers a JSON-RPC error with the SDK's "connection closed" code.
No Django: it runs as its own process.

    python tests/support/upstream_servers/disk_tools.py              # stdio
    python tests/support/upstream_servers/disk_tools.py http PORT    # streamable HTTP (stateful) at …:PORT/mcp

In HTTP mode it keeps sessions, and answers a session id it does not know (after a restart) as FastMCP 1.x does:
`400 Bad Request: No valid session ID provided`.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import json
import os
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError

server = MCPServer("disk-tools")
_write_lock = asyncio.Lock()


def data_dir() -> Path:
    """Where the data is: `$HOME/.disk-tools`, as the real server does (not `HOTCROSS_DATA_DIR`)."""
    folder = Path(os.environ.get("HOME", "/")) / ".disk-tools"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@server.tool()
async def write(text: str) -> dict[str, Any]:
    """Append `text` to this server's notes, under an exclusive lock on its folder (fails if another process holds
    it, as the real server's embedded database does)."""
    folder = data_dir()
    async with _write_lock:  # this process's own writes wait for each other
        with open(folder / "lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise MCPError(code=-32000, message="database is locked by another process") from None
            try:
                with open(folder / "notes.txt", "a") as notes:
                    notes.write(text + "\n")
                time.sleep(0.002)  # the engine's commit: long enough for a second process to collide
                count = len((folder / "notes.txt").read_text().splitlines())
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    return {"notes": count}


@server.tool()
def notes() -> list[str]:
    """Every note written here."""
    path = data_dir() / "notes.txt"
    return path.read_text().splitlines() if path.exists() else []


@server.tool()
def read_path(path: str) -> str:
    """The first 200 characters of any file (the real server's `SELECT * FROM file(...)`); what the OS refused, as
    the real server reports its engine's errors."""
    try:
        with open(path, errors="replace") as handle:
            return handle.read(200)
    except OSError as exc:
        raise ToolError(f"read_path: {exc.strerror}") from None


@server.tool()
def list_dir(path: str) -> list[str]:
    """The names in any folder."""
    try:
        return sorted(os.listdir(path))
    except OSError as exc:
        raise ToolError(f"list_dir: {exc.strerror}") from None


@server.tool()
def fetch_url(url: str) -> int:
    """Fetch any URL (the real server's `url(...)`); its HTTP status."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - the hole the sandbox must close
            return response.status
    except OSError as exc:
        raise ToolError(f"fetch_url: {exc}") from None


@server.tool()
def invalid_query(query: str = "") -> str:
    """Answers a JSON-RPC error with code -32000 (the MCP SDK's own code for "connection closed")."""
    raise MCPError(code=-32000, message=f"invalid query {query!r}"[:4000], data={"query": query})


@server.tool()
def whereami() -> dict[str, Any]:
    """Who and where this process is."""
    return {
        "pid": os.getpid(),
        "uid": os.getuid(),
        "home": os.environ.get("HOME", ""),
        "cwd": os.getcwd(),
        "organization_id": os.environ.get("HOTCROSS_ORGANIZATION_ID", ""),
    }


@server.prompt()
def brief(topic: str) -> str:
    """A prompt with an argument."""
    return f"Brief me on {topic}"


@server.resource("notes://all")
def all_notes() -> str:
    """Every note, as a resource."""
    path = data_dir() / "notes.txt"
    return path.read_text() if path.exists() else ""


@server.completion()
async def complete(ref: Any, argument: Any, context: Any) -> Any:
    """Completes `brief`'s `topic`."""
    from mcp_types import Completion

    return Completion(values=[v for v in ("billing", "bugs", "builds") if v.startswith(argument.value)])


CALLER_METHODS = ("tools/call", "prompts/get", "resources/read", "completion/complete")


@functools.cache
def _jwks_client(url: str) -> Any:
    import jwt

    return jwt.PyJWKClient(url)  # fetches the key set once, and again for a kid it does not know


def verified_caller(token: str, jwks_url: str, audience: str) -> dict[str, Any]:
    """docs/gateway.md's example of how an upstream checks the gateway's `X-Hotcross-Caller` (raises if not valid)."""
    import jwt

    key = _jwks_client(jwks_url).get_signing_key_from_jwt(token)
    return jwt.decode(token, key, algorithms=["EdDSA"], audience=audience, issuer=os.environ["HOTCROSS_ISSUER"])


def http_app() -> Any:
    """Stateful streamable HTTP; an unknown session id gets FastMCP 1.x's 400, not the SDK's 404.

    With `HOTCROSS_JWKS_URL` set, every caller's request (`CALLER_METHODS`) must carry a valid `X-Hotcross-Caller`
    for this URL (else 401), and its claims and path are appended to `$HOME/callers.jsonl`. `/o/<anything>/mcp` is
    served as `/mcp` (an upstream per organization behind one URL template)."""
    app = server.streamable_http_app(json_response=True)
    known: set[str] = set()
    jwks_url = os.environ.get("HOTCROSS_JWKS_URL", "")

    async def checked(scope: Any, receive: Any, send: Any) -> None:
        """The caller's assertion verified (a POST's body read, then handed on)."""
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            method = json.loads(body).get("method")
        except (ValueError, AttributeError):
            method = None
        if method in CALLER_METHODS:
            headers = dict(scope.get("headers") or [])
            host = headers.get(b"host", b"").decode()
            audience = f"http://{host}{scope['raw_path'].decode()}"
            try:
                claims = await asyncio.to_thread(
                    verified_caller, headers.get(b"x-hotcross-caller", b"").decode(), jwks_url, audience
                )
            except Exception as exc:
                answer = json.dumps({"error": f"caller not verified: {exc.__class__.__name__}"}).encode()
                await send(
                    {"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"text/plain")]}
                )
                await send({"type": "http.response.body", "body": answer})
                return
            with open(Path(os.environ["HOME"]) / "callers.jsonl", "a") as log:
                log.write(json.dumps({"path": scope["raw_path"].decode(), "method": method, **claims}) + "\n")
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await app(scope, replay, send)

    async def sessions(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/o/"):
            scope = {**scope, "path": "/mcp"}
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            session = headers.get(b"mcp-session-id", b"").decode()
            if session and session not in known:
                body = b"Bad Request: No valid session ID provided"
                await send(
                    {"type": "http.response.start", "status": 400, "headers": [(b"content-type", b"text/plain")]}
                )
                await send({"type": "http.response.body", "body": body})
                return

            async def noting(message: Any) -> None:
                if message["type"] == "http.response.start":
                    for name, value in message.get("headers") or []:
                        if name.lower() == b"mcp-session-id":
                            known.add(value.decode())
                await send(message)

            if jwks_url and scope["method"] == "POST":
                await checked(scope, receive, noting)
            else:
                await app(scope, receive, noting)
            return
        await app(scope, receive, send)

    return sessions


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "stdio"
    if mode == "http":
        import uvicorn

        uvicorn.run(http_app(), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
    else:
        server.run()
