"""A first `make run` in seconds instead of a minute: the embedded SQLite database is made from a migrated template
kept in the repository (`hotcross/sqlite_template.sql.gz`, the SQL dump of a database that ran every migration),
then `manage.py migrate` applies only what is newer (normally nothing).

Migrating an empty database costs about 40 s on a quiet two-core machine (issue 31; up to 190 s on a busy one), ~90 %
of it Django rebuilding its in-memory migration state (dj-stripe's `0002_2_10` alone holds 514 field removals), not
SQL. Loading the dump costs ~0.05 s.

    python -m hotcross.db_template           make the SQLite database from the template when it does not exist yet
    python -m hotcross.db_template --build   migrate a fresh database and write the template (`make db-template`)

Only a SQLite database that does not exist (or is empty) is made; PostgreSQL and an existing file are left alone, so
`migrate` runs as before. The template says which migrations it holds (its `django_migrations` rows): `migrate` after
it applies any that are newer. `tests/hotcross/test_db_template.py` fails when a migration was added without
`make db-template`.
"""

from __future__ import annotations

import argparse
import gzip
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
TEMPLATE = Path(__file__).resolve().parent / "sqlite_template.sql.gz"


def template_sql(path: Path = TEMPLATE) -> str:
    return gzip.decompress(path.read_bytes()).decode("utf-8")


def template_migrations(path: Path = TEMPLATE) -> set[tuple[str, str]]:
    """The (app, name) of every migration the template has applied."""
    with sqlite3.connect(":memory:") as db:
        db.executescript(template_sql(path))
        return set(db.execute("SELECT app, name FROM django_migrations"))


def build(path: Path = TEMPLATE) -> int:
    """Migrate a fresh SQLite database (a child process, this checkout's settings without any .env) and write its
    dump to `path`. Returns how many migrations it holds."""
    with tempfile.TemporaryDirectory() as folder:
        database = Path(folder) / "template.sqlite3"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "HOTCROSS_", "DATABASE_"))},
            "DATABASE_URL": f"sqlite:///{database}",
            "DOTENV_FILE": "",
            "DEBUG": "true",
            "SECRET_KEY": "template-only",
        }
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=BASE_DIR, env=env, check=True
        )
        with sqlite3.connect(database) as db:
            sql = "\n".join(db.iterdump()) + "\n"
            count = db.execute("SELECT COUNT(*) FROM django_migrations").fetchone()[0]
    path.write_bytes(gzip.compress(sql.encode("utf-8"), compresslevel=9, mtime=0))
    return count


def make_from_template(database: Path, path: Path = TEMPLATE) -> bool:
    """Create the SQLite file `database` from the template when it does not exist or has no table. True when made."""
    if database.exists() and database.stat().st_size > 0:
        with sqlite3.connect(database) as db:
            if db.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]:
                return False
    database.parent.mkdir(parents=True, exist_ok=True)
    partial = database.with_name(database.name + ".partial")
    partial.unlink(missing_ok=True)
    with sqlite3.connect(partial) as db:
        db.executescript(template_sql(path))
    db.close()
    os.replace(partial, database)  # all or nothing: an interrupted load leaves no half-made database
    return True


def configured_sqlite_file() -> Path | None:
    """The SQLite file the settings name (DATABASE_URL, .env), or None for another database or an in-memory one."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hotcross.settings")
    import django
    from django.conf import settings

    django.setup()
    database = settings.DATABASES["default"]
    if database["ENGINE"] != "django.db.backends.sqlite3":
        return None
    name = str(database["NAME"])
    if not name or name == ":memory:" or name.startswith("file:"):
        return None
    return Path(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Make the SQLite database from the migrated template.")
    parser.add_argument("--build", action="store_true", help="migrate a fresh database and write the template")
    args = parser.parse_args(argv)
    if args.build:
        started = time.monotonic()
        count = build()
        print(f"Wrote {TEMPLATE.relative_to(BASE_DIR)}: {count} migrations, in {time.monotonic() - started:.1f} s.")
        return 0
    if not TEMPLATE.exists():
        return 0
    database = configured_sqlite_file()
    if database is None:
        return 0
    started = time.monotonic()
    if make_from_template(database):
        print(
            f"Made {os.path.relpath(database)} from the migrated template in {time.monotonic() - started:.2f} s "
            "(migrate applies only newer migrations)."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
