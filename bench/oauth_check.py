#!/usr/bin/env python
"""Token check vs key check on PostgreSQL, in the same run: what `/mcp` pays per request for an OAuth access token
(`oauth.authentication.authenticate_token`) beside an API key (`accounts.authentication.authenticate_key`).

    .venv/bin/python bench/oauth_check.py [--server postgres://postgres@127.0.0.1:5432]

Creates a scratch database `hotcross_bench_oauth` (dropped at the end) with 5 000 organizations and 50 000
developers; 2 000 of them also hold an OAuth access token (a shadow user, a grant, a token stored as its checksum).
Times over one connection, for the same developers:
  key cold / token cold   memory off: every check asks the database (the one prepared query)
  key warm / token warm   answered from the process's ≤ 1 s memory
Prints checks/s, p50, p99 and the token/key cost ratio (target: a token costs at most 1.2× a key), of the rates and
of the cold p50s.
"""

from __future__ import annotations

import argparse
import datetime
import random
import secrets

from common import check_benchmark, load_developers, summary, timed

ORGS = 5_000
DEVS_PER_ORG = 10
WITH_TOKENS = 2_000
SCRATCH_DB = "hotcross_bench_oauth"


def run(args: argparse.Namespace) -> None:
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone
    from oauth2_provider.models import get_access_token_model, get_application_model

    from accounts import check_cache
    from accounts.authentication import authenticate_key
    from oauth.authentication import authenticate_token, mcp_resource, token_checksum
    from oauth.models import DeveloperAccount, Grant

    print(f"PostgreSQL scratch database {SCRATCH_DB}: migrating and loading…", flush=True)
    for app in ("accounts", "auth", "oauth", "oauth2_provider"):
        call_command("migrate", app, verbosity=0)
    now = timezone.now()
    _, developers, plain_keys = load_developers(ORGS, DEVS_PER_ORG, now)
    rng = random.Random(7)
    chosen = rng.sample(range(len(developers)), WITH_TOKENS)
    client = get_application_model().objects.create(
        name="bench client",
        client_type="public",
        authorization_grant_type="authorization-code",
        redirect_uris="http://127.0.0.1:9/cb",
    )
    users = get_user_model().objects.bulk_create(
        [
            get_user_model()(username=f"developer-{developers[i].pk}", password="!")  # noqa: S106 (unusable)
            for i in chosen
        ]
    )
    DeveloperAccount.objects.bulk_create(
        [DeveloperAccount(developer=developers[i], user=u) for i, u in zip(chosen, users, strict=True)]
    )
    Grant.objects.bulk_create([Grant(developer=developers[i], client=client) for i in chosen])
    tokens = [secrets.token_urlsafe(30) for _ in chosen]
    expires = now + datetime.timedelta(hours=2)
    access = get_access_token_model()
    for user, token in zip(users, tokens, strict=True):
        access.objects.create(
            user=user, application=client, token=token, expires=expires, scope="mcp", resource=[mcp_resource()]
        )
    assert access.objects.filter(token_checksum=token_checksum(tokens[0])).exists()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")

    pairs = [(plain_keys[i], t) for i, t in zip(chosen, tokens, strict=True)]
    sample = [rng.choice(pairs) for _ in range(args.calls)]

    def key_cold(pair) -> None:
        check_cache.clear()
        authenticate_key(pair[0])

    def token_cold(pair) -> None:
        check_cache.clear()
        authenticate_token(pair[1])

    # Warm-up: connection, buffers, prepared statements, and every grant's once-a-minute last-used write (as the key
    # check's "last used < 1 min ago" variant in bench/key_check.py; keys' last use is recent from the loader).
    for pair in pairs:
        key_cold(pair)
        token_cold(pair)

    results = []
    # Interleave rounds so that drift in the machine's load falls on both alike.
    key_samples: list[float] = []
    token_samples: list[float] = []
    for start in range(0, len(sample), 500):
        key_samples += timed(key_cold, sample[start : start + 500])
        token_samples += timed(token_cold, sample[start : start + 500])
    results += [summary("key cold", key_samples), summary("token cold", token_samples)]

    hot = pairs[:500]
    warm_items = [hot[i % len(hot)] for i in range(args.warm_calls)]
    key_warm: list[float] = []
    token_warm: list[float] = []
    for start in range(0, len(warm_items), 10_000):
        check_cache.clear()
        for key, token in hot:
            authenticate_key(key)
            authenticate_token(token)
        chunk = warm_items[start : start + 10_000]
        key_warm += timed(lambda p: authenticate_key(p[0]), chunk)
        token_warm += timed(lambda p: authenticate_token(p[1]), chunk)
    results += [summary("key warm (≤ 1 s memory)", key_warm), summary("token warm (≤ 1 s memory)", token_warm)]

    print(f"\n{'variant':<28} {'checks/s':>12} {'p50 µs':>10} {'p99 µs':>10}")
    for r in results:
        print(f"{r['name']:<28} {r['rate']:>12,.0f} {r['p50']:>10.1f} {r['p99']:>10.1f}")
    cold_ratio = results[0]["rate"] / results[1]["rate"]
    warm_ratio = results[2]["rate"] / results[3]["rate"]
    print(f"\ntoken cost / key cost (target ≤ 1.2×): cold {cold_ratio:.2f}×, warm {warm_ratio:.2f}×")
    print(f"at p50 (less swayed by a busy machine's stalls): cold {results[1]['p50'] / results[0]['p50']:.2f}×")


def main() -> None:
    check_benchmark(__doc__, SCRATCH_DB, run, calls=4_000, warm_calls=100_000)


if __name__ == "__main__":
    main()
