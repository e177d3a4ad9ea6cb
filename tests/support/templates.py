"""Test databases made once and copied: a template per database, built before a run, cloned by every worker.

Creating a test database means migrating an empty one: ~80 s here, nearly all of it Django working out its project
states (tests/support/migrations.py), and every pytest-xdist worker of both CI runs paid it (four times in CI). The
states do not depend on the database, so one process can build the template of each database CI uses, working the
states out once (`python -m tests.support.templates URL…`, run by `.ci/run` while it installs the test tools: ~90 s
for both instead of ~320 s of CPU). A worker then clones the template (`CREATE DATABASE … TEMPLATE`, or a file copy for
SQLite) instead of migrating: one second.

Without a template (a plain `make test`), the workers migrate their databases as before; with `--reuse-db`, an
existing test database is reused as before. A template is named after the run's test database
(`<test database>_template`); `.ci/run` drops the PostgreSQL one when it is done.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def template_name(settings_dict: dict[str, Any]) -> str:
    """The template of a configured database: its test database's name (before pytest-xdist's `_gwN`) + `_template`."""
    from tests.support.database import checkout_tag, test_database_name

    if settings_dict["ENGINE"] == "django.db.backends.sqlite3":
        return f"{settings_dict['NAME']}-test-{checkout_tag()}_template"
    return f"{test_database_name(settings_dict['NAME'])}_template"


def _template_exists(creation: Any, template: str) -> bool:
    if creation.connection.vendor == "sqlite":
        return Path(template).is_file()
    with creation._nodb_cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [template])
        return cursor.fetchone() is not None


def _clone(creation: Any, template: str, target: str) -> None:
    connection = creation.connection
    connection.close()
    if connection.vendor == "sqlite":
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(template, target)
        return
    quote = connection.ops.quote_name
    with creation._nodb_cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {quote(target)} WITH (FORCE)")
        for attempt in range(20):
            try:
                cursor.execute(f"CREATE DATABASE {quote(target)} TEMPLATE {quote(template)}")
                return
            except Exception as exc:  # another worker's clone still holds the template: try again
                if "is being accessed by other users" not in str(exc) or attempt == 19:
                    raise
                time.sleep(0.1)


def use_templates() -> None:
    """In this process, create a test database by cloning its template when there is one (see the module)."""
    from django.conf import settings
    from django.core.management import call_command
    from django.db.backends.base.creation import BaseDatabaseCreation

    migrate_anew = BaseDatabaseCreation.create_test_db

    def create_test_db(self, verbosity=1, autoclobber=False, serialize=True, keepdb=False):
        connection = self.connection
        template = template_name(settings.DATABASES[connection.alias])  # the configured name, not yet the test one
        test_name = self._get_test_db_name()
        if (keepdb and _exists(self, test_name)) or not _template_exists(self, template):
            return migrate_anew(self, verbosity, autoclobber, serialize, keepdb)
        if verbosity >= 1:
            self.log(f"Cloning test database for alias {connection.alias!r} from {template}...")
        _clone(self, template, test_name)
        settings.DATABASES[connection.alias]["NAME"] = test_name
        connection.settings_dict["NAME"] = test_name
        if serialize:
            connection._test_serialized_contents = self.serialize_db_to_string()
        call_command("createcachetable", database=connection.alias)
        connection.ensure_connection()
        return test_name

    BaseDatabaseCreation.create_test_db = create_test_db


def _exists(creation: Any, name: str) -> bool:
    return _template_exists(creation, name)


def build(urls: list[str]) -> None:
    """Build the template of each DATABASE_URL in `urls`, in this process (the states once for all)."""
    import environ

    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    os.environ["DATABASE_URL"] = urls[0]
    os.environ.setdefault("DOTENV_FILE", "")
    from django.conf import settings

    aliases = ["default"]
    for index, url in enumerate(urls[1:], start=1):
        alias = f"template{index}"
        settings.DATABASES[alias] = {**environ.Env.db_url_config(url), "TEST": {}}
        aliases.append(alias)
    import django

    django.setup()
    from django.db import connections

    from tests.support import migrations

    migrations.use_in_migrate_command()
    migrations.keep_every_state()  # the second database's creation takes the first's states
    for alias in aliases:
        connection = connections[alias]
        template = template_name(connection.settings_dict)
        connection.settings_dict["TEST"]["NAME"] = template
        started = time.perf_counter()
        connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False, keepdb=False)
        connection.close()
        if hasattr(connection, "close_pool"):
            connection.close_pool()
        print(f"{template}: built in {time.perf_counter() - started:.1f} s", flush=True)


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        sys.exit("usage: python -m tests.support.templates DATABASE_URL [DATABASE_URL …]")
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    started = time.perf_counter()
    build(sys.argv[1:])
    print(f"all templates built in {time.perf_counter() - started:.1f} s", flush=True)
    # Exit without freeing the ~2 GB of kept states object by object (that alone took ~20 s).
    os._exit(0)


if __name__ == "__main__":
    main()
