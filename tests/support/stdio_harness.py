"""An MCP streamable-HTTP front for a stdio MCP server, so that an HTTP-only client (the MCP conformance runner) can
test a server over stdio: every session is one process of its own.

`python -m tests.support.stdio_harness --port P --env-json NAME -- COMMAND…` (NAME: an environment variable holding
the JSON object that is the whole environment of COMMAND, so that a key in it is never on a command line):

- A POST without `Mcp-Session-Id` and with an `initialize` takes a process of its own: a session under a new id (the
  `Mcp-Session-Id` of the answer). Another POST without a session (a stateless request) takes a process for itself,
  stopped once it is answered (one process cannot serve both protocol eras: it keeps the era of its first message).
- A POST's messages are written to the process's stdin, one line each. If it holds requests, the answer is an SSE
  stream of what the process writes to stdout, until the response to each of them has come: responses go to the
  stream of their request, and what the server sends on its own (requests to the client, notifications) to the stream
  of the request whose progress token it carries, else to the newest open stream. A POST of responses and
  notifications only (the client's answer to a server's request) gets 202.
- DELETE ends the session; GET is 405 (no stream for the server's own messages outside a request); an unknown
  session is 404; a Host or Origin other than 127.0.0.1 or localhost is 403 (DNS rebinding). A session with no open
  stream for `IDLE_SECONDS` is ended (its stdin closed: the server exits as it does when a client leaves).
- A few processes are started ahead (`--warm`), since a stdio server takes about two seconds to start and each of the
  runner's scenarios is a new session. With `--fork`, COMMAND is a `manage.py` command forked from a process that has
  imported Django and the bridge once (`tests.support.stdio_forks`): a session then costs milliseconds of CPU, not ~2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from typing import Any

from aiohttp import web

IDLE_SECONDS = 5.0
SESSION = "Mcp-Session-Id"


def key(request_id: Any) -> str:
    return json.dumps(request_id)


def error(code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}


def local(host: str, origin: str | None) -> bool:
    """Host is this machine (127.0.0.1 or localhost, any port), and so is Origin when there is one."""
    allowed = ("127.0.0.1", "localhost")
    if host.rsplit(":", 1)[0] not in allowed:
        return False
    return origin is None or origin.split("://", 1)[-1].rsplit(":", 1)[0] in allowed


class Session:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.waiting: dict[str, asyncio.Queue] = {}  # request id -> its POST's stream
        self.tokens: dict[str, asyncio.Queue] = {}  # progress token -> the stream of the request that gave it
        self.streams: list[asyncio.Queue] = []  # open POST streams, newest last
        self.idle_since = asyncio.get_running_loop().time()
        self.reader = asyncio.create_task(self.read())

    async def read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict) and "method" not in message and "id" in message:
                stream = self.waiting.pop(key(message["id"]), None)
            else:
                params = message.get("params") if isinstance(message, dict) else None
                token = params.get("progressToken") if isinstance(params, dict) else None
                stream = self.tokens.get(key(token)) if token is not None else None
                stream = stream or (self.streams[-1] if self.streams else None)
            if stream is not None:
                stream.put_nowait(message)
        for stream in self.streams:
            stream.put_nowait(None)  # the process is gone: the streams end

    def write(self, messages: list[Any]) -> None:
        assert self.process.stdin is not None
        for message in messages:
            self.process.stdin.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    def idle_for(self, now: float) -> float:
        return 0.0 if self.streams else now - self.idle_since

    def ended(self) -> bool:
        return self.reader.done()

    async def stop(self) -> None:
        """Close its stdin and wait for the end of its stdout (a stdio server exits then); kill it after 10 s."""
        if self.process.stdin is not None and not self.process.stdin.is_closing():
            self.process.stdin.close()
        try:
            await asyncio.wait_for(asyncio.shield(self.reader), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        await self.process.wait()
        self.reader.cancel()


class Forked:
    """A child of the fork server (`tests.support.stdio_forks`), with what `Session` uses of asyncio's Process."""

    def __init__(self, pid: int, stdin: asyncio.StreamWriter, stdout: asyncio.StreamReader) -> None:
        self.pid, self.stdin, self.stdout = pid, stdin, stdout

    @classmethod
    async def start(cls, control: socket.socket) -> Forked:
        loop = asyncio.get_running_loop()
        stdin_read, stdin_write = os.pipe()
        stdout_read, stdout_write = os.pipe()
        socket.send_fds(control, [b"fork"], [stdin_read, stdout_write])
        os.close(stdin_read)
        os.close(stdout_write)
        answer = b""
        while not answer.endswith(b"\n"):  # the fork server answers at once (blocking here for a few ms)
            answer += control.recv(64) or b"\n"
        pid = int(answer)
        stdout = asyncio.StreamReader(limit=2**24)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdout), os.fdopen(stdout_read, "rb", 0))
        transport, protocol = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, os.fdopen(stdin_write, "wb", 0)
        )
        return cls(pid, asyncio.StreamWriter(transport, protocol, None, loop), stdout)

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)

    async def wait(self) -> None:
        pass  # its stdout has ended: the fork server reaps it


class Harness:
    def __init__(self, command: list[str], env: dict[str, str], warm: int, fork: bool) -> None:
        self.command = command
        self.env = env
        self.warm = warm
        self.ready: asyncio.Queue[Any] = asyncio.Queue()
        self.sessions: dict[str, Session] = {}
        self.tasks: set[asyncio.Task] = set()
        self.control: socket.socket | None = None
        if fork:
            self.control, theirs = socket.socketpair()
            self.forks = subprocess.Popen(  # ended when the socket closes
                [sys.executable, "-m", "tests.support.stdio_forks", str(theirs.fileno()), *command],
                env=env,
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
            )
            theirs.close()

    async def spawn(self) -> None:
        if self.control is not None:
            self.ready.put_nowait(await Forked.start(self.control))
            return
        process = await asyncio.create_subprocess_exec(
            *self.command, env=self.env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=2**24
        )
        self.ready.put_nowait(process)

    def spawn_later(self) -> None:
        task = asyncio.create_task(self.spawn())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def take(self) -> Session:
        self.spawn_later()  # the next one starts now
        return Session(await self.ready.get())

    async def start(self, app: web.Application) -> None:
        for _ in range(self.warm):
            self.spawn_later()
        self.tasks.add(asyncio.create_task(self.reap()))

    async def reap(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            now = asyncio.get_running_loop().time()
            for session_id, session in list(self.sessions.items()):
                if session.idle_for(now) > IDLE_SECONDS or session.ended():
                    del self.sessions[session_id]
                    self.tasks.add(asyncio.create_task(session.stop()))

    async def close(self, app: web.Application) -> None:
        for task in list(self.tasks):
            task.cancel()
        stopping = [session.stop() for session in self.sessions.values()]
        while not self.ready.empty():
            stopping.append(Session(self.ready.get_nowait()).stop())
        await asyncio.gather(*stopping, return_exceptions=True)
        if self.control is not None:
            self.control.close()
            self.forks.wait(10)

    async def post(self, request: web.Request) -> web.StreamResponse:
        if not local(request.headers.get("Host", ""), request.headers.get("Origin")):
            return web.Response(status=403, text="Host or Origin not local")  # as the SDK's DNS-rebinding guard
        try:
            body = await request.json()
        except ValueError:
            return web.json_response(error(-32700, "Parse error"), status=400)
        messages = body if isinstance(body, list) else [body]
        if not all(isinstance(m, dict) for m in messages):
            return web.json_response(error(-32600, "Invalid Request"), status=400)
        session_id = request.headers.get(SESSION)
        if session_id is None and any(m.get("method") == "initialize" for m in messages):
            session_id = uuid.uuid4().hex
            session = self.sessions[session_id] = await self.take()
        elif session_id is None:
            session = await self.take()  # for this POST only
        elif (session := self.sessions.get(session_id)) is None:
            return web.json_response(error(-32001, "Session not found"), status=404)
        requests = [m for m in messages if "method" in m and "id" in m]
        stream: asyncio.Queue = asyncio.Queue()
        for message in requests:
            session.waiting[key(message["id"])] = stream
            params = message.get("params")
            meta = params.get("_meta") if isinstance(params, dict) else None
            if isinstance(meta, dict) and "progressToken" in meta:
                session.tokens[key(meta["progressToken"])] = stream
        session.streams.append(stream)
        headers = {SESSION: session_id} if session_id else {}
        try:
            session.write(messages)
            if not requests:
                return web.Response(status=202, headers=headers)
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **headers})
            await response.prepare(request)
            pending = {key(m["id"]) for m in requests}
            with contextlib.suppress(ConnectionResetError):  # the client went away
                while pending and (message := await stream.get()) is not None:
                    if "method" not in message:
                        pending.discard(key(message.get("id")))
                    await response.write(b"event: message\ndata: " + json.dumps(message).encode() + b"\n\n")
                await response.write_eof()
            return response
        finally:
            session.streams.remove(stream)
            session.idle_since = asyncio.get_running_loop().time()
            for token in [t for t, s in session.tokens.items() if s is stream]:
                del session.tokens[token]
            for request_id in [i for i, s in session.waiting.items() if s is stream]:
                del session.waiting[request_id]
            if not session_id:
                self.tasks.add(asyncio.create_task(session.stop()))

    async def delete(self, request: web.Request) -> web.Response:
        session = self.sessions.pop(request.headers.get(SESSION, ""), None)
        if session is None:
            return web.Response(status=404)
        await session.stop()
        return web.Response(status=200)

    async def get(self, request: web.Request) -> web.Response:
        return web.Response(status=405, headers={"Allow": "POST, DELETE"})


def make_app(command: list[str], env: dict[str, str], warm: int, fork: bool) -> web.Application:
    harness = Harness(command, env, warm, fork)
    app = web.Application()
    app.on_startup.append(harness.start)
    app.on_cleanup.append(harness.close)
    app.router.add_post("/mcp", harness.post)
    app.router.add_delete("/mcp", harness.delete)
    app.router.add_get("/mcp", harness.get)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--env-json", required=True, help="the environment variable holding the command's environment")
    parser.add_argument("--warm", type=int, default=4, help="processes started ahead")
    parser.add_argument(
        "--fork", action="store_true", help="COMMAND is a manage.py command: fork it from tests.support.stdio_forks"
    )
    parser.add_argument("command", nargs="+", help="the stdio server (after --)")
    args = parser.parse_args(argv)
    env = json.loads(os.environ.get(args.env_json) or "null")
    if not isinstance(env, dict):
        print(f"{args.env_json} is not a JSON object", file=sys.stderr)
        return 2
    asyncio.set_event_loop(asyncio.new_event_loop())
    web.run_app(
        make_app(args.command, env, args.warm, args.fork),
        host="127.0.0.1",
        port=args.port,
        print=None,
        access_log=None,
        shutdown_timeout=0.1,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
