"""Fuzz of the Stripe webhook endpoint: a fixed corpus of more than 10 000 hostile deliveries.

Two families, both deterministic (one seed):
- forged: every hostile `Stripe-Signature` header (missing, empty, garbage, non-ASCII, huge, a timestamp far off, a
  well-formed signature made with another secret) with every hostile body — none may be accepted;
- signed: events signed with the endpoint's real secret, each with one field replaced by a hostile value (wrong
  types, NUL characters, huge strings, deep nesting) — a 400 unless the event is still one Stripe could send.

Checked over the whole corpus: 0 accepted wrongly (a forged delivery answered anything but 400, or stored), 0 HTTP
500, 0 tracebacks and no secret in the captured log, and nothing stored for any refused delivery.
"""

from __future__ import annotations

import copy
import json
import logging
import random
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from djstripe.models import Event, WebhookEventTrigger

from tests.factories import OrganizationFactory
from tests.support import corpus
from tests.support import stripe_data as sd
from tests.support.stripe import WEBHOOK_SECRET, _only_loopback, stripe_stub, webhook  # noqa: F401 (fixtures)

SEED = 20261203
OTHER_SECRET = "whsec_someoneElsesSecret00000000000"
RANDOM_HEADERS_PER_BODY = 120
RANDOM_SIGNED_PAIRS = 4_500

# The field-by-field sweep uses these; random cases draw from the shared corpus (tests/support/corpus.py).
HOSTILE_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    2**64,
    1.5,
    [],
    {},
    {"object": None},
    "",
    "\x00",
    "evt_\x00",
    "é",
    "x" * 10_000,
    "'; DROP TABLE accounts_organization; --",
    "../../etc/passwd",
    "\r\nX-Injected: 1",
]


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _signature_headers(rng: random.Random, payload: str) -> list[str | None]:
    now = int(time.time())
    good_shape = sd.signature(payload, OTHER_SECRET)
    return [
        None,
        "",
        " ",
        "t=",
        "v1=",
        "t=1,v1=é",
        "t=1,v1=deadbeef",
        f"t={now},v1=" + "0" * 64,
        f"t={now},v1=" + "0" * 64 + ",v1=" + "f" * 64,
        f"t={now + 3600},v1=" + "a" * 64,
        f"t=-{now},v1=" + "a" * 64,
        f"t={now}",
        f"t=abc,v1={'a' * 64}",
        "t=" + "9" * 400 + ",v1=aa",
        "x" * 5000,
        ",".join(f"v1={rng.getrandbits(256):064x}" for _ in range(100)),
        "t=1\x00,v1=aa",
        good_shape,
        sd.signature(payload, OTHER_SECRET, timestamp=now - 10),
        sd.signature(payload + " ", WEBHOOK_SECRET),  # the real secret, but over another body
        sd.signature(payload, WEBHOOK_SECRET, timestamp=now - 3600),  # the real secret, too old
        sd.signature(payload, WEBHOOK_SECRET, timestamp=now + 3600),  # the real secret, too far ahead
        *(_random_signature(rng, now) for _ in range(RANDOM_HEADERS_PER_BODY)),
    ]


def _random_signature(rng: random.Random, now: int) -> str:
    """A header assembled from plausible and hostile parts: schemes, timestamps, digests, separators."""
    headers = corpus.header_values(rng)
    parts = []
    for _ in range(rng.randint(1, 4)):
        scheme = rng.choice(["t", "v1", "v0", "V1", "t ", "", "é", "v1\x00"])
        value = rng.choice(
            [
                str(now + rng.randint(-400, 400)),
                str(rng.getrandbits(64)),
                f"{rng.getrandbits(256):064x}",
                f"{rng.getrandbits(128):x}",
                next(headers).decode("latin-1")[:300],
                "",
            ]
        )
        parts.append(f"{scheme}={value}")
    return rng.choice([",", ", ", ";", ",,"]).join(parts)


def _hostile_bodies(rng: random.Random, event: dict[str, Any]) -> list[bytes]:
    text = sd.dumps(event)
    paths = list(_paths(event))
    documents = corpus.json_documents(rng)
    return [
        *(next(documents) for _ in range(20)),  # the corpus's fixed hostile documents first
        text.encode(),
        text[: len(text) // 2].encode(),
        text.encode() + b"\x00",
        json.dumps([event] * 20).encode(),
        *(sd.dumps(_replace(event, rng.choice(paths), corpus.json_values(rng))).encode() for _ in range(16)),
    ]


def _forged(rng: random.Random, event: dict[str, Any]) -> Iterator[tuple[str | None, bytes]]:
    for body in _hostile_bodies(rng, event):
        for header in _signature_headers(rng, body.decode("utf-8", "replace")):
            yield header, body


def _paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))


def _replace(event: dict[str, Any], path: tuple, value: Any) -> Any:
    if not path:
        return copy.deepcopy(value)
    mutated = copy.deepcopy(event)
    target = mutated
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return mutated


def _signed_mutants(rng: random.Random, event: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Every field replaced by every hostile value, then random pairs of replacements."""
    paths = list(_paths(event))
    for path in paths:
        for value in HOSTILE_VALUES:
            yield _where(path), sd.dumps(_replace(event, path, value))
        yield _where(path) + "+deep", sd.dumps(_replace(event, path, "@@DEEP@@")).replace('"@@DEEP@@"', _nested(2000))
    for _ in range(RANDOM_SIGNED_PAIRS):
        first, second = rng.sample(paths[1:], 2)
        mutated = _replace(event, first, corpus.json_values(rng))
        try:
            mutated = _replace(mutated, second, corpus.json_values(rng))
        except (KeyError, TypeError):  # the first replacement removed the second's parent
            pass
        yield f"{_where(first)} and {_where(second)}", sd.dumps(mutated)


def _where(path: tuple) -> str:
    return "/".join(map(str, path)) or "(whole)"


@pytest.mark.django_db
def test_ten_thousand_hostile_deliveries(webhook, stripe_stub, caplog):  # noqa: F811 (fixtures)
    rng = random.Random(SEED)
    cus = sd.customer()
    org = OrganizationFactory(stripe_customer_id=cus["id"], subscription_status="active", max_seats=2)
    # An event type the project does not act on: a signed mutant that is still a valid event is processed by
    # dj-stripe without calling Stripe, so the corpus stays fast.
    event = sd.event("customer.source.expiring", {"id": "card_1", "object": "card", "customer": cus["id"]})
    client = Client(raise_request_exception=False)
    outcomes: Counter[str] = Counter()
    wrong: list[str] = []

    def post(body: bytes | str, header: str | None) -> int:
        headers = {} if header is None else {"Stripe-Signature": header}
        response = client.post(webhook.path, data=body, content_type="application/json", headers=headers)
        outcomes[str(response.status_code)] += 1
        return response.status_code

    with caplog.at_level(logging.INFO):
        for header, body in _forged(rng, event):
            if (status := post(body, header)) != 400:
                wrong.append(f"forged {header!r:.60} {body[:60]!r}: {status}")
        assert not WebhookEventTrigger.objects.exists(), "a forged delivery was stored"
        for where, payload in _signed_mutants(rng, event):
            if (status := post(payload, sd.signature(payload, WEBHOOK_SECRET))) not in (200, 400):
                wrong.append(f"signed, {where} hostile: {status}")

    # Each accepted delivery stores its one trigger row; a refused one stores nothing.
    assert WebhookEventTrigger.objects.count() == outcomes["200"]
    cases = sum(outcomes.values())
    assert cases >= 10_000, cases
    assert wrong == [], f"{len(wrong)} of {cases} wrong, e.g. {wrong[:5]}"
    assert outcomes["500"] == 0
    tracebacks = [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert tracebacks == [], tracebacks[0].getMessage()[:500] if tracebacks else ""
    assert WEBHOOK_SECRET not in caplog.text
    assert not Event.objects.filter(type__startswith="customer.subscription").exists()
    org.refresh_from_db()
    assert (org.subscription_status, org.max_seats) == ("active", 2)
    # A signed event naming a connected account makes dj-stripe look the account up; nothing else is fetched.
    assert {path for path in stripe_stub.requested() if not path.startswith("/v1/account")} == set()
