"""Conversion of the old system's `customers` table (1 customer = 1 Stripe customer = 1 key) into organizations and
developers. Run by the migration `0006_convert_legacy_customers` (forward and back) and read by
`manage.py orgs legacy-report`.

The rules (docs/operations.md, "Migrating from the customer-based model"):

- One developer per customer, whose id is the customer's id: email trimmed and lower-cased, names copied (NULL →
  empty), every `api_key_*` column copied verbatim (the hash is the SHA-256 hex of the whole key, as `accounts.keys`
  computes it, so old keys keep working; revoked keys stay revoked). `seat_claimed_at` is when the key was created,
  else when the customer was created, else now.
- One organization per paying entity. Customers sharing a Stripe customer id (trimmed) become the developers of one
  organization (per-organization pricing, `max_seats` = their number, the best status of theirs); every other customer
  gets a one-seat, per-developer organization whose id is the customer's id. NULL or blank Stripe ids never merge.
  Name: the company, trimmed; blank → the email (merged: the alphabetically first company, else the first email).
  Status: trimmed and lower-cased; NULL or blank → `incomplete` (keys refused until Stripe reports a paid status).
- Each created row keeps `legacy_customer_id`, so a second run converts only customers without a developer yet, and
  the reverse deletes exactly the converted rows. `customers` is only ever read.
- Validation runs first, and any finding stops the conversion before anything is written.

Rooms: `source` (the pending customers, normalised, as a queryset of the registry in use), `problems` (what a finding
is, each kind's fix), `validation` (what stops the conversion), `report` (the plan, the refusals), `conversion` (the
INSERTs), `revert`. Everything works on the models of the registry it is given (historical ones in the migration), never
on today's models.
"""

from accounts.legacy.conversion import PROGRESS_THRESHOLD, LegacyResult, convert
from accounts.legacy.problems import Problem
from accounts.legacy.report import LegacyConversionError, LegacyPlan, LegacyReverseError, plan
from accounts.legacy.revert import ReverseResult, revert
from accounts.legacy.source import Legacy

__all__ = [
    "PROGRESS_THRESHOLD",
    "Legacy",
    "LegacyConversionError",
    "LegacyPlan",
    "LegacyResult",
    "LegacyReverseError",
    "Problem",
    "ReverseResult",
    "convert",
    "plan",
    "revert",
]
