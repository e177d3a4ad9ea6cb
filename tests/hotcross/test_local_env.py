"""`make run`'s development .env (hotcross/local_env.py): written when missing, never overwritten, and enough for
every command in a second terminal."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from hotcross.local_env import ensure_env_file, read_value

ROOT = Path(__file__).resolve().parents[2]


def clean_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "HOTCROSS_", "DATABASE_"))}
    env.pop("DEBUG", None)
    env.pop("SECRET_KEY", None)
    env.update(overrides)
    return env


def local_env(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hotcross.local_env", *args],
        cwd=ROOT,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_writes_a_development_env_readable_by_its_owner_only(tmp_path):
    path = tmp_path / ".env"
    assert ensure_env_file(path, "http://127.0.0.1:8123") is True
    assert read_value(path, "DEBUG") == "true"
    assert len(read_value(path, "SECRET_KEY")) >= 50
    assert read_value(path, "HOTCROSS_PUBLIC_URL") == "http://127.0.0.1:8123"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    other = tmp_path / "other.env"
    ensure_env_file(other)
    assert read_value(other, "SECRET_KEY") != read_value(path, "SECRET_KEY")  # generated, not a shared constant


def test_never_overwrites_an_existing_file(tmp_path):
    path = tmp_path / ".env"
    path.write_text("DEBUG=false\nSECRET_KEY=mine\n# my own notes\n")
    assert ensure_env_file(path, "http://127.0.0.1:9999") is False
    assert path.read_text() == "DEBUG=false\nSECRET_KEY=mine\n# my own notes\n"

    first = tmp_path / "first.env"
    ensure_env_file(first)
    before = first.read_text()
    assert ensure_env_file(first, "http://127.0.0.1:9999") is False
    assert first.read_text() == before


def test_the_command_says_what_it_wrote_and_notes_a_different_url_without_changing_the_file(tmp_path):
    path = tmp_path / ".env"
    result = local_env("--path", str(path), HOTCROSS_PUBLIC_URL="http://127.0.0.1:8123")
    assert result.returncode == 0, result.stderr
    assert "Wrote" in result.stdout and "HOTCROSS_PUBLIC_URL=http://127.0.0.1:8123" in result.stdout
    assert read_value(path, "SECRET_KEY") not in result.stdout  # the secret is never printed
    before = path.read_text()

    again = local_env("--path", str(path), HOTCROSS_PUBLIC_URL="http://127.0.0.1:8124")
    assert again.returncode == 0 and path.read_text() == before
    assert "note:" in again.stdout and "HOTCROSS_PUBLIC_URL=http://127.0.0.1:8123" in again.stdout

    same = local_env("--path", str(path), HOTCROSS_PUBLIC_URL="http://127.0.0.1:8123")
    assert same.returncode == 0 and same.stdout == "" and path.read_text() == before


def test_with_the_written_env_a_command_needs_nothing_else(tmp_path):
    path = tmp_path / ".env"
    ensure_env_file(path, "http://127.0.0.1:8123")
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "--no-imports",
            "-c",
            "from django.conf import settings as s; print(s.DEBUG, s.HOTCROSS_PUBLIC_URL)",
        ],
        cwd=ROOT,
        env=clean_env(DOTENV_FILE=str(path), DATABASE_URL=f"sqlite:///{tmp_path}/x.sqlite3"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "http://127.0.0.1:8123"]
