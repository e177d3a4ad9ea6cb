"""Signals the domain sends; other apps connect to them."""

from __future__ import annotations

from django.dispatch import Signal

# `manage.py usage prune` prunes what accounts keeps, then sends this (keyword `now`: None, the current time) so an
# app that keeps records of usage prunes its own (the API app: `api.reported_usage.prune_reported_events`). A
# receiver returns what it pruned, with the `deleted` count and the `before` time.
usage_prune_requested = Signal()
