"""Callers at the same moment: `race` runs one piece of work in many threads released together, each thread with
its own database connection (closed when it is done), and hands back each result or exception. For the PostgreSQL
tests of row locks and unique constraints (`postgres_only`: SQLite serializes writers)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from django.db import connections


def race(work: Callable[[int], object], threads: int) -> list[object]:
    """Run `work(i)` for i in range(threads), in as many threads released together; each result or exception."""
    barrier = threading.Barrier(threads)
    results: list[object] = [None] * threads

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except Exception as exc:
            results[i] = exc
        finally:
            connections.close_all()

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    return results
