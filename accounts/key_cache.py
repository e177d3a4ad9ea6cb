"""Until `accounts.plans` stops reading it (another change of issue 27): the check memory's lifetime, now
`accounts.check_cache.ttl`. Delete this module when `accounts.plans` no longer imports it."""

from accounts.check_cache import ttl

__all__ = ["ttl"]
