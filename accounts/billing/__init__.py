"""Stripe → organizations. dj-stripe receives webhooks, checks signatures, stores events and re-fetches Stripe's
objects; this package maps what it synced onto organizations, through `accounts.services`.

- `prices`: what a subscription's items and their prices' metadata say about seats and the pricing model (pure).
- `sync`: a synced subscription → its organization (`apply_subscription`), and re-fetching from Stripe
  (`sync_from_stripe`, for `manage.py orgs sync-stripe`).
- `receivers`: the dj-stripe signal receivers, connected in `AccountsConfig.ready()`.
- `config`: the Stripe API key and HTTP client settings (timeouts, retries), and what is wrong with a key.
- `endpoints`: local webhook-endpoint rows (`manage.py stripe_webhook_endpoint`, the demo seeding).
- `usage`: usage billing (who is billed, the reporting intervals, the `MeterReport` ledger, sending), for
  `manage.py billing`; `meter_events`: its Stripe side (send one meter event, read an upcoming invoice).
- `checks`: the Stripe keys' system checks, registered in `AccountsConfig.ready()`.
- `webhooks`: the door in front of dj-stripe's webhook view (signature, shape, key).
"""
