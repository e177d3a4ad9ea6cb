"""The development `.env` that `make run` writes when there is none, so every README command works in a second
terminal exactly as printed (they read the same file as the server).

    python -m hotcross.local_env [--path .env] [--public-url http://127.0.0.1:8000]

It writes DEBUG=true, a freshly generated SECRET_KEY and HOTCROSS_PUBLIC_URL (what `make run` serves), readable by
its owner only, and never touches an existing file: yours wins, always. When an existing file disagrees with what
this `make run` serves, it says so in one line.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"


def development_env(public_url: str = DEFAULT_PUBLIC_URL) -> str:
    """The text of a new development .env (a new SECRET_KEY each time)."""
    return (
        "# Written by `make run` for local development (hotcross/local_env.py); make run never overwrites it.\n"
        "# Edit freely, or delete it to get a fresh one. Never use these values in production.\n"
        "DEBUG=true\n"
        f"SECRET_KEY={secrets.token_urlsafe(50)}\n"
        "# Where `make run` serves: the base of every URL the commands print or register.\n"
        f"HOTCROSS_PUBLIC_URL={public_url.rstrip('/')}\n"
    )


def read_value(path: Path, name: str) -> str | None:
    """The value a dotenv file gives `name` (last assignment wins), or None."""
    value = None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        key, sep, rest = line.strip().removeprefix("export ").partition("=")
        if sep and key.strip() == name:
            value = rest.strip().strip("'\"")
    return value


def ensure_env_file(path: Path, public_url: str = DEFAULT_PUBLIC_URL) -> bool:
    """Write a development .env at `path` unless something is there already. True when it wrote one."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(development_env(public_url))
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a development .env when there is none.")
    parser.add_argument("--path", default=None, help="Default: DOTENV_FILE, else .env at the top of the repository.")
    parser.add_argument("--public-url", default=os.environ.get("HOTCROSS_PUBLIC_URL") or DEFAULT_PUBLIC_URL)
    args = parser.parse_args(argv)
    if args.path is None and os.environ.get("DOTENV_FILE") == "":
        return 0  # DOTENV_FILE set but empty: the settings read no file, so there is none to write
    path = Path(args.path or os.environ.get("DOTENV_FILE") or BASE_DIR / ".env")
    shown = os.path.relpath(path) if path.is_absolute() and path.is_relative_to(Path.cwd()) else str(path)
    try:
        written = ensure_env_file(path, args.public_url)
    except OSError as exc:
        print(f"Cannot write {shown}: {exc.strerror}. Create it yourself (see .env.example).", file=sys.stderr)
        return 1
    if written:
        print(f"Wrote {shown} for development (DEBUG=true, a new SECRET_KEY, HOTCROSS_PUBLIC_URL={args.public_url}).")
        return 0
    configured = read_value(path, "HOTCROSS_PUBLIC_URL")
    if configured is not None and configured.rstrip("/") != args.public_url.rstrip("/"):
        print(
            f"note: {shown} says HOTCROSS_PUBLIC_URL={configured}, but this run serves {args.public_url}; "
            f"commands in other terminals use {shown}'s (edit it to change that)."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
