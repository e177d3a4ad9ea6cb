"""`infra.db.SharedReads`: concurrent cold checks of one credential share one database read (the key check and
the token check both use it)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from infra.db import BOOKKEEPING, SharedReads


class _Reader:
    """A read that counts its runs and, until released, blocks its worker thread (as a slow query would)."""

    def __init__(self, fail: bool = False) -> None:
        self.runs: list[str] = []
        self.release = threading.Event()
        self.fail = fail

    def __call__(self, key: str) -> str:
        self.runs.append(key)
        assert self.release.wait(5)
        if self.fail:
            raise LookupError(key)
        return f"row for {key}"


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0.01)


def test_concurrent_reads_of_one_key_share_one_run_and_other_keys_get_their_own():
    reader = _Reader()
    reads = SharedReads(BOOKKEEPING, reader)

    async def scenario():
        waiting = [asyncio.ensure_future(reads.read("a")) for _ in range(5)]
        waiting.append(asyncio.ensure_future(reads.read("b")))
        await _settle()
        assert reads.running() == 2
        reader.release.set()
        results = await asyncio.gather(*waiting)
        return results, reads.running()

    results, running_after = asyncio.run(scenario())
    assert results == ["row for a"] * 5 + ["row for b"]
    assert sorted(reader.runs) == ["a", "b"]
    assert running_after == 0


def test_a_read_runs_again_once_the_previous_one_is_over():
    reader = _Reader()
    reader.release.set()
    reads = SharedReads(BOOKKEEPING, reader)

    async def scenario():
        return await reads.read("a"), await reads.read("a")

    assert asyncio.run(scenario()) == ("row for a", "row for a")
    assert reader.runs == ["a", "a"]


def test_every_waiter_gets_the_exception_and_the_next_read_tries_again():
    reader = _Reader(fail=True)
    reads = SharedReads(BOOKKEEPING, reader)

    async def scenario():
        waiting = [asyncio.ensure_future(reads.read("a")) for _ in range(3)]
        await _settle()
        reader.release.set()
        outcomes = await asyncio.gather(*waiting, return_exceptions=True)
        reader.fail = False
        return outcomes, await reads.read("a")

    outcomes, again = asyncio.run(scenario())
    assert all(isinstance(outcome, LookupError) for outcome in outcomes)
    assert again == "row for a"
    assert reader.runs == ["a", "a"]


def test_a_cancelled_caller_does_not_cancel_the_read_others_wait_for():
    reader = _Reader()
    reads = SharedReads(BOOKKEEPING, reader)

    async def scenario():
        impatient = asyncio.ensure_future(reads.read("a"))
        patient = asyncio.ensure_future(reads.read("a"))
        await _settle()
        impatient.cancel()
        await _settle()
        reader.release.set()
        with pytest.raises(asyncio.CancelledError):
            await impatient
        return await patient

    assert asyncio.run(scenario()) == "row for a"
    assert reader.runs == ["a"]
