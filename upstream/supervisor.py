"""The upstream supervisor: one process per host and upstream configuration that owns the stdio upstreams (one shared,
or one per organization) and serves them to every bridge process over a local socket.

    python -m upstream.supervisor SOCKET        # the configuration in $HOTCROSS_UPSTREAM_SUPERVISOR_CONFIG (JSON)

Why a process of its own: each uvicorn worker (and each `manage.py mcp_server`) used to start its own copy of a stdio
upstream, and a disk-backed upstream (data under $HOME, a lock on its folder) breaks when two copies share a folder.
Here a single `UpstreamPool` runs them all, with the same start, idle-stop, cap and restart rules as in one process;
the bridges are its clients (`upstream.supervised`). A bridge starts the supervisor when none answers on the socket;
the socket's lock file (`flock`) lets exactly one run, a second one exits at once. Each bridge process stays attached
(`GET /events`, which also tells it when an upstream's lists changed); once none is attached, the supervisor stops its
upstreams and exits, so it ends with the server: at once when the last one said it was stopping (`POST /leaving`),
after `LINGER_SECONDS` when it vanished (a crashed worker that uvicorn starts again finds it still there).

The protocol is JSON over HTTP on a Unix socket (aiohttp on both ends), one request per call:

- `POST /session {"key"}`: the scope's upstream started (key: an organization id, or null for the shared one); answers
  its state, capabilities, lists and their version, or `{"error": {...}}`;
- `POST /request {"key", "method", "params", "progress"}`: forwards `tools/call`, `prompts/get`, `resources/read` or
  `completion/complete`; answers NDJSON: `{"notification": ...}` lines (progress), then `{"result": ...}` or
  `{"error": {"code", "message", "data"}}` (the upstream's own errors unchanged, the gateway's as `upstream.errors`);
- `GET /status`: the pool's status (for /healthz); `GET /events`: NDJSON `{"key", "version"}` when lists change.

No Django here: the configuration comes as JSON (`encode_config` / `decode_config`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from mcp.shared.exceptions import MCPError
from mcp_types import PromptReference, ResourceTemplateReference

from upstream.config import UpstreamConfig
from upstream.connection import Upstream
from upstream.listing import Listing
from upstream.pool import UpstreamPool

logger = logging.getLogger("upstream.supervisor")

CONFIG_ENV = "HOTCROSS_UPSTREAM_SUPERVISOR_CONFIG"
LINGER_SECONDS = 3.0  # with no bridge attached this long, the supervisor stops its upstreams and exits
FIRST_ATTACH_SECONDS = 30.0  # after its start, how long it waits for the first bridge
HEARTBEAT_SECONDS = 5.0  # an empty line on every /events stream, so a vanished bridge is noticed
METHODS = ("tools/call", "prompts/get", "resources/read", "completion/complete")


# --- the configuration, as the bridges hand it over ------------------------------------------------------------------


def encode_config(config: UpstreamConfig) -> str:
    """`config` as JSON (paths as strings, tuples as lists)."""
    values = {}
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        values[item.name] = str(value) if isinstance(value, Path) else value
    return json.dumps(values, sort_keys=True)


def decode_config(text: str) -> UpstreamConfig:
    """The `UpstreamConfig` `encode_config` wrote (each value back to its field's type)."""
    values = json.loads(text)
    defaults = UpstreamConfig()
    fields = {}
    for item in dataclasses.fields(UpstreamConfig):
        if item.name not in values:
            continue
        value, kind = values[item.name], type(getattr(defaults, item.name))
        if isinstance(getattr(defaults, item.name), Path):
            value = Path(value)
        elif kind is tuple:
            value = tuple(value)
        fields[item.name] = value
    return UpstreamConfig(**fields)


def socket_path(config: UpstreamConfig) -> Path:
    """Where the supervisor of `config` listens: in its data folder, named by a hash of the whole configuration (one
    supervisor per configuration and host); in the temporary folder if that path is too long for a Unix socket."""
    digest = hashlib.sha256(encode_config(config).encode()).hexdigest()[:16]
    path = config.data_dir.resolve() / f"supervisor-{digest}.sock"
    if len(os.fsencode(path)) > 107:  # sun_path's size, less its final NUL
        path = Path(tempfile.gettempdir()) / f"hotcross-supervisor-{digest}.sock"
    return path


# --- the process ---------------------------------------------------------------------------------------------------


def dump(model: Any) -> Any:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def listing_json(listing: Listing) -> dict[str, Any]:
    return {
        "tools": [dump(tool) for tool in listing.tools.values()],
        "prompts": [dump(prompt) for prompt in listing.prompts],
        "resources": [dump(resource) for resource in listing.resources],
        "templates": [dump(template) for template in listing.templates],
    }


def error_json(exc: MCPError) -> dict[str, Any]:
    return {"error": {"code": exc.code, "message": exc.message, "data": exc.data}}


class Supervisor:
    """The pool of one configuration, served on a Unix socket."""

    def __init__(self, config: UpstreamConfig) -> None:
        self.pool = UpstreamPool(config)
        self.attached = 0
        self.announced = False  # the last bridge to detach said it was stopping (`/leaving`)
        self.detached_at = time.monotonic() - LINGER_SECONDS + FIRST_ATTACH_SECONDS
        self._versions: dict[str | None, tuple[int, int]] = {}  # key → (id of the listing, its version)
        self._streams: set[asyncio.Queue[dict[str, Any]]] = set()
        self._counter = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/session", self.session)
        app.router.add_post("/request", self.request)
        app.router.add_get("/status", self.status)
        app.router.add_get("/events", self.events)
        app.router.add_post("/leaving", self.leaving)
        return app

    async def leaving(self, request: web.Request) -> web.Response:
        """A bridge process stopping (not crashing): once none is attached, no need to wait for one to come back."""
        self.announced = True
        return web.json_response({})

    def version(self, upstream: Upstream) -> int:
        """A number that changes whenever `upstream`'s lists are read again (and is told to every attached bridge)."""
        key, listing = upstream.organization_id, upstream.listing
        known = self._versions.get(key)
        if known is not None and known[0] == id(listing):
            return known[1]
        self._counter += 1
        self._versions[key] = (id(listing), self._counter)
        for queue in self._streams:
            queue.put_nowait({"key": key, "version": self._counter})
        return self._counter

    async def _upstream(self, key: Any) -> Upstream:
        return await self.pool.upstream_for(key if isinstance(key, str) else None)

    async def session(self, request: web.Request) -> web.Response:
        body = await request.json()
        try:
            upstream = await self._upstream(body.get("key"))
            await upstream.session()
        except MCPError as exc:
            return web.json_response(error_json(exc))
        capabilities = upstream.capabilities
        return web.json_response(
            {
                "state": upstream.state.value,
                "capabilities": dump(capabilities) if capabilities is not None else None,
                "version": self.version(upstream),
                "listing": listing_json(upstream.listing),
            }
        )

    async def request(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        method, params = body.get("method"), body.get("params") or {}
        response = web.StreamResponse(headers={"content-type": "application/x-ndjson"})
        await response.prepare(request)

        async def send(message: dict[str, Any]) -> None:
            await response.write(json.dumps(message).encode() + b"\n")

        async def notify(message: dict[str, Any]) -> None:
            with contextlib.suppress(ConnectionError):
                await send({"notification": message})

        try:
            upstream = await self._upstream(body.get("key"))
            result = await self._forward(upstream, method, params, notify, bool(body.get("progress")))
            await send({"result": result})
        except MCPError as exc:
            await send(error_json(exc))
        except (KeyError, TypeError, ValueError) as exc:
            await send({"error": {"code": -32602, "message": f"invalid {method} request: {exc}", "data": None}})
        await response.write_eof()
        return response

    async def _forward(
        self, upstream: Upstream, method: Any, params: dict[str, Any], notify: Any, progress: bool
    ) -> dict[str, Any]:
        meta = params.get("_meta") or {}
        if method == "tools/call":
            result = await upstream.call_tool(
                params["name"], params.get("arguments") or {}, meta, notify, progress=progress
            )
        elif method == "prompts/get":
            result = await upstream.get_prompt(params["name"], params.get("arguments"), meta)
        elif method == "resources/read":
            result = await upstream.read_resource(params["uri"], meta)
        elif method == "completion/complete":
            ref_json = params["ref"]
            ref = (
                PromptReference.model_validate(ref_json)
                if ref_json.get("type") == "ref/prompt"
                else ResourceTemplateReference.model_validate(ref_json)
            )
            context = (params.get("context") or {}).get("arguments")
            result = await upstream.complete(ref, params["argument"], context, meta)
        else:
            raise ValueError(f"the supervisor forwards {', '.join(METHODS)}, not {method!r}")
        self.version(upstream)  # a list_changed during the call: the bridges hear of it now
        return dump(result)

    async def status(self, request: web.Request) -> web.Response:
        status = self.pool.status()
        status["supervisor"] = {"pid": os.getpid(), "bridges": self.attached}
        return web.json_response(status)

    async def events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "application/x-ndjson"})
        await response.prepare(request)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._streams.add(queue)
        self.attached += 1
        self.announced = False
        try:
            while True:
                try:
                    message = await asyncio.wait_for(queue.get(), HEARTBEAT_SECONDS)
                except TimeoutError:
                    message = {}
                await response.write(json.dumps(message).encode() + b"\n")
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._streams.discard(queue)
            self.attached -= 1
            if not self.attached:  # stopped servers: exit now; a crashed one: wait a moment for its restart
                self.detached_at = time.monotonic() - (LINGER_SECONDS if self.announced else 0.0)
        return response

    async def watch_versions(self) -> None:
        """Lists re-read in the background (list_changed, the refresh timer) are told to the bridges too."""
        while True:
            await asyncio.sleep(0.2)
            for upstream in self.pool.upstreams():
                self.version(upstream)

    async def serve(self, path: Path) -> None:
        runner = web.AppRunner(self.app(), handle_signals=False, access_log=None)
        await runner.setup()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a socket left by a supervisor that died (we hold the lock: it is not running)
        site = web.UnixSite(runner, str(path))
        await site.start()
        os.chmod(path, 0o600)
        logger.info("upstream supervisor %s serving %s on %s", os.getpid(), self.pool.config.describe(), path)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        watcher = loop.create_task(self.watch_versions())
        try:
            await self.pool.start()
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.2)
                if not self.attached and time.monotonic() - self.detached_at >= LINGER_SECONDS:
                    break
        finally:
            watcher.cancel()
            logger.info("upstream supervisor %s stopping (no bridge attached)", os.getpid())
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            await self.pool.close()
            await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or CONFIG_ENV not in os.environ:
        print(f"usage: {CONFIG_ENV}=<json> python -m upstream.supervisor SOCKET", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = decode_config(os.environ.pop(CONFIG_ENV))
    path = Path(args[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0  # another supervisor of this configuration runs: the bridges use it
        # uvloop where installed (uvicorn[standard] brings it), as the bridges' own loop: every call crosses this one.
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(Supervisor(config).serve(path))
    return 0


def _loop_factory() -> Any:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


if __name__ == "__main__":
    sys.exit(main())
