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
    "tests/accounts/test_legacy_report.py": "migrations",
    "tests/admin/test_support_migration.py": "migrations",
    "tests/accounts/test_migration_states.py": "migrations",
}

# Seconds per group or file in a PostgreSQL run on the quiet 2-core CI machine (`--durations=0`, the test database's
# creation left out); what is not here weighs 0.2 s per test. Only the order matters: the heaviest start first.
WEIGHTS = {
    "tests/hotcross/test_readme.py": 150.0,  # `make run` migrates a fresh SQLite, then README's command lines
    "migrations": 100.0,
    "tests/security/test_surface_fuzz.py": 65.0,
    "tests/hotcross/test_outage.py": 25.0,
    "tests/hotcross/test_forwarded.py": 20.0,
    "tests/gateway/test_conformance.py": 45.0,  # the conformance runner 8 times, 6 through the bridge
    "tests/oauth/test_cimd.py": 15.0,
    "tests/gateway/test_settings.py": 48.0,
    "tests/security/test_webhook_fuzz.py": 40.0,
    "tests/mcp_bridge/test_stdio.py": 40.0,
    "tests/mcp_bridge/test_outage.py": 31.0,
    "tests/gateway/test_faults.py": 27.0,
    "tests/plans/test_rate_limits.py": 19.0,
    "tests/mcp_bridge/test_usage_spool.py": 19.0,
    "tests/gateway/test_organization_scope.py": 18.0,
    "tests/mcp_bridge/test_inspector.py": 18.0,
    "tests/hotcross/test_errors.py": 16.0,
    "tests/security/test_mcp_fuzz.py": 15.0,
    "tests/gateway/test_everything.py": 14.0,
    "tests/e2e/test_admin_browser.py": 14.0,
    "tests/gateway/test_forwarding.py": 13.0,
    "tests/mcp_bridge/test_concurrency.py": 13.0,
    "tests/mcp_bridge/test_secrets.py": 12.0,
    "tests/hotcross/test_deploy.py": 12.0,
    "tests/gateway/test_direct.py": 12.0,
    "tests/gateway/test_identity.py": 11.0,
    "tests/oauth/test_end_to_end.py": 11.0,
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
