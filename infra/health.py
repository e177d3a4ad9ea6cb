"""What `/healthz` says besides the database: each app registers a check under a name (`register`, from its
`AppConfig.ready`), and the view adds what every check answers (`statuses`) to its body, in registration order.

A check answers plain JSON values, or None when it has nothing to say (then its name is left out); it never changes
the status code (only the database does), and it must be cheap and safe to call from any thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Check = Callable[[], Any]

_checks: dict[str, Check] = {}


def register(name: str, check: Check) -> None:
    """`check()` answers under `name` in `/healthz` (registering a name again replaces its check)."""
    _checks[name] = check


def statuses() -> dict[str, Any]:
    """What every registered check answers, by name; the checks that answer None are left out."""
    answers = {}
    for name, check in list(_checks.items()):
        answer = check()
        if answer is not None:
            answers[name] = answer
    return answers
