"""The migrated SQLite template that makes a first `make run` fast (hotcross/db_template.py): it holds exactly the
repository's migrations (else: `make db-template`), a database made from it needs no migration, and an existing
database is never touched."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest
from django.db import connection
from django.db.migrations.loader import MigrationLoader

from hotcross import db_template
from tests.support.mcp import server_env
from tests.support.servers import ROOT


def test_the_template_holds_every_migration_of_the_repository():
    on_disk = set(MigrationLoader(None, ignore_no_migrations=True).disk_migrations)
    in_template = db_template.template_migrations()
    assert in_template == on_disk, (
        f"hotcross/sqlite_template.sql.gz is out of date (missing {sorted(on_disk - in_template)}, extra "
        f"{sorted(in_template - on_disk)}): run `make db-template`"
    )


def test_a_database_made_from_it_needs_no_migration(tmp_path):
    database = tmp_path / "var" / "hotcross.sqlite3"
    assert db_template.make_from_template(database) is True
    check = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--check", "--noinput"],
        cwd=ROOT,
        env=server_env(DATABASE_URL=f"sqlite:///{database}", DOTENV_FILE=""),
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert not list(tmp_path.glob("var/*.partial"))


@pytest.mark.django_db
def test_its_tables_are_the_migrated_schema(tmp_path):
    if connection.vendor != "sqlite":
        pytest.skip("compared with the test database's SQLite schema")
    database = tmp_path / "made.sqlite3"
    db_template.make_from_template(database)

    def schema(db) -> dict[str, list[tuple]]:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {
            t: sorted(r[1:4] for r in db.execute(f'PRAGMA table_info("{t}")')) for t in tables if t != "sqlite_sequence"
        }

    with sqlite3.connect(database) as made:
        template_schema = schema(made)
    with connection.cursor() as cursor:
        migrated = schema(cursor.connection)
    assert template_schema == migrated


def test_an_existing_database_is_left_alone(tmp_path):
    database = tmp_path / "mine.sqlite3"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE mine (x INTEGER)")
    assert db_template.make_from_template(database) is False
    with sqlite3.connect(database) as db:
        assert [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")] == ["mine"]
