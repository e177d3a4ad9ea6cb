"""`make run`'s server: uvicorn serving `hotcross.asgi:application`, stopping cleanly.

    python -m hotcross.serve [--host 127.0.0.1] [--port 8000]

uvicorn stops gracefully on Ctrl-C (SIGINT) or SIGTERM and then raises the same signal again, so the process dies of
it and `make` reports `Error 130` / `Error 143` after a perfectly clean stop. Here a stop asked for by a signal ends
the process with status 0; anything else (a port already in use, an app that cannot load) keeps its non-zero status.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from types import FrameType

import uvicorn
from django.core.exceptions import ImproperlyConfigured

APP = "hotcross.asgi:application"


def _proxy_options() -> dict[str, object]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hotcross.settings")
    from infra.proxy import uvicorn_options

    return uvicorn_options()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the Hotcross back office with uvicorn.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)

    stops: list[int] = []

    def stop_requested(signum: int, frame: FrameType | None) -> None:
        # uvicorn installs its own handlers while it serves and re-raises the signal once it has shut down: that
        # second delivery lands here instead of killing the process.
        stops.append(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop_requested)

    # Forwarded headers trusted only from the proxy BEHIND_PROXY names (infra.proxy), not uvicorn's 127.0.0.1.
    try:
        proxy = _proxy_options()
    except ImproperlyConfigured as exc:
        print("Hotcross cannot start:", " ".join(str(exc).split()), file=sys.stderr)
        return 1
    server = uvicorn.Server(uvicorn.Config(APP, host=args.host, port=args.port, **proxy))
    server.run()
    if stops or server.started:
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
