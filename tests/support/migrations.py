"""Django's migration executor, without re-working-out the same project states again and again (tests only).

Every migration, forward or back, needs Django's in-memory project state before and after each of its operations,
rendered as model classes. Django works them out each time by mutating rendered states, and each operation on a
rendered state re-renders the models related to the one it changes. Here that is nearly all the cost:

- a rollback to `accounts 0001` (which unapplies `oauth`, `api` and django-oauth-toolkit's migrations too) first
  walks the plan on a rendered state through dj-stripe's `0002_2_10`, whose 514 field removals of densely related
  models take ~55 s; mutating the same migrations into an *unrendered* state takes 0.05 s for the whole project, and
  rendering it once 0.13 s;
- the operations of the ~35 migrations applied or unapplied take ~7 s of re-rendering each way, against ~1 s of SQL.

The states depend only on the migration graph and on what has been mutated into them, never on the data, so
`StatesExecutor`:

- works out a rollback's states on one unrendered state, rendering a copy at each migration to unapply;
- keeps every state it works out for the life of the process (`STATES`), keyed by what was mutated into it, in order
  (whole migrations, then the operations of the current one), and hands out clones. The state before a migration that
  a forward run applies (creating the test database records them all) is the state a rollback through it needs.

Everything else is Django's: the plan, `apply_migration`, `unapply_migration`, transactions and every operation's
SQL, forward and back, with states equal to Django's (tests/accounts/test_migration_states.py compares the schema
after a rollback and a re-migration with stock Django's, on both engines).

Three Django 5.2 methods are copied with only the states' origin changed: `MigrationExecutor._migrate_all_backwards`
(its first loop), `Migration.apply` and `Migration.unapply` (without `collect_sql`, which only `sqlmigrate` uses).
`check_django()` pins the copies to the sources they were made from: a Django whose methods differ stops the test
session with a message, instead of migrating in a way Django no longer does.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import textwrap
from typing import Any

import django
from django.db.migrations.exceptions import IrreversibleError
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.migration import Migration
from django.db.migrations.state import ProjectState
from django.db.transaction import atomic

# sha256 of the dedented source of each copied method, in the Django the copies come from (5.2.19).
COPIED_FROM = {
    "MigrationExecutor._migrate_all_backwards": "8c59cd9a5651b3ab5666487287d38e0cea19a4c2808e04cffa203efa8159b28b",
    "Migration.apply": "d0b310e859d919c47834c945e70e4abf613d7d3e530c4aa1dc3953c6f7cc1be2",
    "Migration.unapply": "a1d84dcdcf5eca46e35719b7f319dfc67e3be519ed50b49de40ffe10f83d3a66",
}

Step = tuple[str, ...]  # (app_label, name) for a whole migration, (app_label, name, index) for one operation of it
Key = tuple[Step, ...]


def _digest(qualified_name: str) -> str:
    owner, method = qualified_name.split(".")
    source = inspect.getsource(getattr({"MigrationExecutor": MigrationExecutor, "Migration": Migration}[owner], method))
    return hashlib.sha256(textwrap.dedent(source).encode()).hexdigest()


def check_django() -> None:
    """Raise unless Django's methods are the ones this module copies."""
    changed = {name: _digest(name) for name, digest in COPIED_FROM.items() if _digest(name) != digest}
    if django.VERSION[:2] != (5, 2) or changed:
        raise RuntimeError(
            f"tests/support/migrations.py copies methods of Django 5.2, and Django {django.get_version()} has other "
            f"{', '.join(changed) or 'versions'} (sha256 now: {changed}). Compare them, carry Django's changes over "
            "to StatesExecutor, then update COPIED_FROM."
        )


class StateCache:
    """Rendered project states by what was mutated into them, in order. Reads are clones: no caller can change what
    another gets."""

    def __init__(self) -> None:
        self._states: dict[Key, ProjectState] = {}

    def get(self, key: Key) -> ProjectState | None:
        state = self._states.get(key)
        return None if state is None else state.clone()

    def put(self, key: Key, state: ProjectState) -> None:
        """Keep a rendered copy of `state` (which is left as it is) unless one is kept already."""
        if key not in self._states:
            kept = state.clone()  # a clone of a rendered state is rendered; of an unrendered one, not
            kept.apps  # noqa: B018 - renders (a cached property)
            self._states[key] = kept

    def clear(self) -> None:
        self._states.clear()

    def __len__(self) -> int:
        return len(self._states)


STATES = StateCache()
KEEP_EVERY_STATE = False


def keep_every_state() -> None:
    """Keep the states of every operation, even of a database created from nothing: for a process that creates
    several (tests/support/templates.py), the second one then costs its SQL only."""
    global KEEP_EVERY_STATE
    KEEP_EVERY_STATE = True


def step_of(migration: Migration) -> Step:
    return (migration.app_label, migration.name)


class StatesExecutor(MigrationExecutor):
    """`MigrationExecutor` taking its project states from `STATES`, and working out the missing ones cheaply."""

    states = STATES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._forward_lineage: Key | None = None  # what the state of the running forward migration holds
        self._lineages: dict[Migration, Key] = {}  # what the state before each migration to unapply holds
        self._keep_operations = True

    # --- forward -----------------------------------------------------------------------------------------------------

    def _migrate_all_forwards(self, state, plan, full_plan, fake, fake_initial):
        # The state given holds the applied migrations, mutated in the full plan's order (`_create_project_state`).
        applied = set(self.loader.applied_migrations)
        self._forward_lineage = tuple(step_of(m) for m, _ in full_plan if step_of(m) in applied)
        # Creating a database from nothing keeps the states between migrations, not its operations' (~900 states,
        # dj-stripe's 514 among them, ~2 GB): only a test that rolls a migration back needs those again, and it keeps
        # them. Unless the process creates several databases (`keep_every_state`).
        self._keep_operations = KEEP_EVERY_STATE or bool(self._forward_lineage)
        try:
            return super()._migrate_all_forwards(state, plan, full_plan, fake, fake_initial)
        finally:
            self._forward_lineage = None

    def apply_migration(self, state, migration, fake=False, fake_initial=False):
        lineage = self._forward_lineage
        if lineage is None:  # not from _migrate_all_forwards: nothing known about `state`
            return super().apply_migration(state, migration, fake=fake, fake_initial=fake_initial)
        self.states.put(lineage, state)  # the state before `migration`: what a rollback through it starts from
        migration.apply = functools.partial(self._apply, migration, lineage)  # this instance only, for this call
        try:
            state = super().apply_migration(state, migration, fake=fake, fake_initial=fake_initial)
        finally:
            del migration.apply
        self._forward_lineage = (*lineage, step_of(migration))
        return state

    # --- backward ----------------------------------------------------------------------------------------------------

    def unapply_migration(self, state, migration, fake=False):
        lineage = self._lineages.get(migration)
        if lineage is None:
            return super().unapply_migration(state, migration, fake=fake)
        migration.unapply = functools.partial(self._unapply, migration, lineage)
        try:
            return super().unapply_migration(state, migration, fake=fake)
        finally:
            del migration.unapply

    def _state_before(self, state: ProjectState, lineage: Key) -> ProjectState:
        """The rendered state before a migration to unapply: kept, else a rendered copy of the unrendered `state`."""
        kept = self.states.get(lineage)
        if kept is None:
            self.states.put(lineage, state)
            kept = self.states.get(lineage)
        return kept  # type: ignore[return-value]

    def _migrate_all_backwards(self, plan, full_plan, fake):
        """Django 5.2's, but for the first loop: the states come from `STATES` or from an unrendered state."""
        migrations_to_run = {m[0] for m in plan}
        # Holds all migration states prior to the migrations being unapplied
        states = {}
        state = self._create_project_state()  # never rendered, so mutating it stays cheap
        lineage: Key = ()
        applied_migrations = {
            self.loader.graph.nodes[key] for key in self.loader.applied_migrations if key in self.loader.graph.nodes
        }
        if self.progress_callback:
            self.progress_callback("render_start")
        for migration, _ in full_plan:
            if not migrations_to_run:
                break
            if migration in migrations_to_run:
                # The state before this migration
                states[migration] = self._state_before(state, lineage)
                self._lineages[migration] = lineage
                migrations_to_run.remove(migration)
            elif migration not in applied_migrations:
                # Only mutate the state if the migration is actually applied to make sure the resulting state doesn't
                # include changes from unrelated migrations.
                continue
            migration.mutate_state(state, preserve=False)
            lineage = (*lineage, step_of(migration))
        if self.progress_callback:
            self.progress_callback("render_success")

        for migration, _ in plan:
            self.unapply_migration(states[migration], migration, fake=fake)
            applied_migrations.remove(migration)

        # Generate the post migration state by starting from the state before the last migration is unapplied and
        # mutating it to include all the remaining applied migrations.
        last_unapplied_migration = plan[-1][0]
        state = states[last_unapplied_migration]
        # Avoid mutating state with apps rendered as it's an expensive operation.
        del state.apps
        for index, (migration, _) in enumerate(full_plan):
            if migration == last_unapplied_migration:
                for migration, _ in full_plan[index:]:
                    if migration in applied_migrations:
                        migration.mutate_state(state, preserve=False)
                break

        return state

    # --- one migration's operations ------------------------------------------------------------------------------

    def _after(self, migration: Migration, lineage: Key, index: int, before: ProjectState) -> ProjectState:
        """The state after operation `index` of `migration`, given `before` (the state before it, whose key is
        `lineage` + the operations before `index`)."""
        key = (*lineage, (*step_of(migration), str(index)))
        after = self.states.get(key)
        if after is None:
            after = before.clone()
            migration.operations[index].state_forwards(migration.app_label, after)
            if self._keep_operations:
                self.states.put(key, after)
        return after

    def _apply(self, migration: Migration, lineage: Key, project_state, schema_editor, collect_sql=False):
        """Django 5.2's `Migration.apply`, with each operation's state from `_after` (no `collect_sql`)."""
        if collect_sql:
            raise NotImplementedError("StatesExecutor does not collect SQL (sqlmigrate)")
        for index, operation in enumerate(migration.operations):
            # Save the state before the operation has run
            old_state = project_state
            project_state = self._after(migration, lineage, index, old_state)
            # Run the operation
            atomic_operation = operation.atomic or (migration.atomic and operation.atomic is not False)
            if not schema_editor.atomic_migration and atomic_operation:
                # Force a transaction on a non-transactional-DDL backend or an
                # atomic operation inside a non-atomic migration.
                with atomic(schema_editor.connection.alias):
                    operation.database_forwards(migration.app_label, schema_editor, old_state, project_state)
            else:
                # Normal behaviour
                operation.database_forwards(migration.app_label, schema_editor, old_state, project_state)
        return project_state

    def _unapply(self, migration: Migration, lineage: Key, project_state, schema_editor, collect_sql=False):
        """Django 5.2's `Migration.unapply`, with each operation's states from `_after` (no `collect_sql`)."""
        if collect_sql:
            raise NotImplementedError("StatesExecutor does not collect SQL (sqlmigrate)")
        # Construct all the intermediate states we need for a reverse migration
        to_run = []
        new_state = project_state
        # Phase 1
        for index, operation in enumerate(migration.operations):
            # If it's irreversible, error out
            if not operation.reversible:
                raise IrreversibleError(f"Operation {operation} in {migration} is not reversible")
            old_state = new_state
            new_state = self._after(migration, lineage, index, old_state)
            to_run.insert(0, (operation, old_state, new_state))

        # Phase 2
        for operation, to_state, from_state in to_run:
            atomic_operation = operation.atomic or (migration.atomic and operation.atomic is not False)
            if not schema_editor.atomic_migration and atomic_operation:
                # Force a transaction on a non-transactional-DDL backend or an
                # atomic operation inside a non-atomic migration.
                with atomic(schema_editor.connection.alias):
                    operation.database_backwards(migration.app_label, schema_editor, from_state, to_state)
            else:
                # Normal behaviour
                operation.database_backwards(migration.app_label, schema_editor, from_state, to_state)
        return project_state


def migrate(*targets: tuple[str, str], connection: Any = None) -> ProjectState:
    """Run the real migrations to `targets` (default: every app's latest), as `manage.py migrate` would, with the
    states of `STATES`."""
    if connection is None:
        from django.db import connection
    executor = StatesExecutor(connection)
    return executor.migrate(list(targets) or executor.loader.graph.leaf_nodes())


def use_in_migrate_command() -> None:
    """Make `manage.py migrate` (and so the test database's creation) run on `StatesExecutor` in this process."""
    from django.core.management.commands import migrate as migrate_command

    check_django()
    migrate_command.MigrationExecutor = StatesExecutor
