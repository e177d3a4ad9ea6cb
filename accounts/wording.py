"""Words for people that more than one room uses: counts with their plural, and what a seat overflow means.

The admin, the command line, the key check and the admin history all describe the seat rule; they take its words
from here so that it reads the same everywhere.
"""

from __future__ import annotations


def plural(count: int, word: str, words: str | None = None) -> str:
    """`1 seat`, `2 seats` (`words` for an irregular plural)."""
    return f"{count} {word if count == 1 else (words or word + 's')}"


def newest_refused(used: int, max_seats: int) -> str:
    """What a downgrade below the seats in use does: `the newest seat holder is refused` (or `the 3 newest …`)."""
    excess = used - max_seats
    if excess == 1:
        return "the newest seat holder is refused"
    return f"the {excess} newest seat holders are refused"
