"""Signals the domain sends; other apps connect to them."""

from __future__ import annotations

from django.dispatch import Signal

# `reason` of `access_ended`
KEY_REVOKED = "key_revoked"
KEY_ROTATED = "key_rotated"
DEACTIVATED = "deactivated"
SIGNED_OUT_EVERYWHERE = "signed_out_everywhere"

# A developer's access ended: `developers` (Developer instances), `reason` (one of the above), `actor` (who did it).
# Sent by `accounts.services.developers` inside the transaction of the change (for SIGNED_OUT_EVERYWHERE, on its own).
# A receiver ends what it holds for these developers and returns how many it ended: the OAuth app
# (`oauth.grants.end_access`) ends their web sessions and unused authorization codes and returns how many of the
# developers had signed in; for SIGNED_OUT_EVERYWHERE it also revokes every grant and token and returns how many grants.
access_ended = Signal()

# `manage.py usage prune` prunes what accounts keeps, then sends this (keyword `now`: None, the current time) so an
# app that keeps records of usage prunes its own (the API app: `api.reported_usage.prune_reported_events`). A
# receiver returns what it pruned, with the `deleted` count and the `before` time.
usage_prune_requested = Signal()
