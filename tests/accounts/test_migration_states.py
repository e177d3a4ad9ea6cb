"""tests/support/migrations.py hands the migration tests the same project states stock Django works out.

The full comparison (a rollback to `accounts 0001` and back, stock against ours, schema by schema on both engines)
takes stock Django ~2 minutes: it is `bench/migration_states.py`. Here, in seconds:

- Django's methods are still the ones the executor copies (else the session would not have started: `check_django`);
- the states of a rollback, worked out on unrendered states, equal the states of stock Django's own loop, for plans
  where stock is cheap;
- the states kept in `STATES` equal the states worked out afresh, for the full rollback the migration tests make.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from tests.support import migrations
from tests.support.migrations import STATES, StatesExecutor, check_django

pytestmark = pytest.mark.django_db


class Recorder:
    """Records the state each migration to unapply gets, instead of unapplying it (nothing is written)."""

    def __init__(self) -> None:
        self.states: dict[str, object] = {}

    def unapply_migration(self, state, migration, fake=False):
        self.states[str(migration)] = state
        return state


def rollback_states(executor_class: type[MigrationExecutor], target: tuple[str, str]) -> dict[str, object]:
    """The state before each migration a rollback to `target` would unapply, as `executor_class` works them out."""
    recorder = Recorder()

    class Recording(executor_class):  # type: ignore[misc, valid-type]
        def unapply_migration(self, state, migration, fake=False):
            return recorder.unapply_migration(state, migration, fake)

    executor = Recording(connection)
    plan = executor.migration_plan([target])
    assert plan and all(backwards for _, backwards in plan)
    full_plan = executor.migration_plan(executor.loader.graph.leaf_nodes(), clean_start=True)
    executor._migrate_all_backwards(plan, full_plan, fake=False)
    return recorder.states


def test_the_copied_django_methods_are_still_djangos():
    check_django()  # raises with what to compare when Django's methods change


@pytest.mark.parametrize(
    "target",
    [
        ("oauth2_provider", "0018_resource_indicators"),  # four migrations in a row, after dj-stripe's in the plan
        ("accounts", "0010_plans"),  # one migration, before most others
        ("api", "0001_initial"),  # after accounts, admin; before axes, dj-stripe
    ],
)
def test_rollback_states_equal_stock_djangos(target):
    stock = rollback_states(MigrationExecutor, target)
    ours = rollback_states(StatesExecutor, target)
    assert list(ours) == list(stock)
    for name, state in stock.items():
        assert ours[name] == state, name  # ProjectState equality: every model's fields, options, bases, managers


def test_kept_states_equal_states_worked_out_afresh(monkeypatch):
    """The full rollback of the migration tests: what `STATES` holds (from creating the test database, or earlier
    tests) against the same states worked out with nothing kept."""
    kept = rollback_states(StatesExecutor, ("accounts", "0001_initial"))
    monkeypatch.setattr(migrations, "STATES", migrations.StateCache())
    monkeypatch.setattr(StatesExecutor, "states", migrations.STATES)
    fresh = rollback_states(StatesExecutor, ("accounts", "0001_initial"))
    assert len(kept) == len(fresh) >= 30  # accounts 0002…, api, oauth, django-oauth-toolkit's
    assert list(kept) == list(fresh)
    for name, state in fresh.items():
        assert kept[name] == state, name
    assert len(STATES) > 0
