"""How pytest-xdist shares the suite between its workers (`-n 2`, `make test`).

By file, as `--dist loadfile`: a module's fixtures (a module-scoped server, say) are made once, on one worker. On top
of that, `GROUPS` keeps files together that must share one process:

- the migration tests roll the database back and forth; on one worker they share the project states that
  `tests.support.migrations` keeps (the first rollback in a process works them out, ~20 s; later ones take ~2 s).

Work is handed out heaviest first (`WEIGHTS`, seconds measured on this machine, everything else by its number of
tests), so that a long file does not start last and leave the other worker idle at the end.

(`--dist loadgroup` with `xdist_group` marks would say the same, but with pytest 9.2 and xdist 3.8 it silently
scheduled marked tests on both workers.)
"""

from __future__ import annotations

from xdist.scheduler import LoadScopeScheduling

GROUPS = {
    "tests/accounts/test_legacy_migration.py": "migrations",
    "tests/admin/test_support_migration.py": "migrations",
    "tests/accounts/test_migration_states.py": "migrations",
}

# Rough seconds per group or file on a quiet 2-core machine; what is not here weighs 0.2 s per test.
WEIGHTS = {
    "migrations": 60.0,
}
SECONDS_PER_TEST = 0.2


class GroupedFileScheduling(LoadScopeScheduling):
    """`--dist loadfile`, with the files of a `GROUPS` entry as one unit, and the heaviest unit handed out first."""

    def _split_scope(self, nodeid: str) -> str:
        path = nodeid.split("::", 1)[0]
        return GROUPS.get(path, path)

    def _weight(self, scope: str) -> float:
        return WEIGHTS.get(scope, SECONDS_PER_TEST * len(self.workqueue[scope]))

    def _assign_work_unit(self, node) -> None:
        heaviest = max(self.workqueue, key=self._weight)
        self.workqueue.move_to_end(heaviest, last=False)
        super()._assign_work_unit(node)
