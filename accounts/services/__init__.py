"""Every write of the accounts domain. The admin, the command line, the MCP bridge and the Stripe webhooks call these
and hold no rules of their own.

One API (`from accounts import services; services.add_developer(...)`), kept in modules by subject:
`organizations` (status, seats, a subscription's state), `developers` (developers, keys, seats taken) and `usage`
(usage events). Services take keyword arguments, validate, lock what they change, record the admin history
(`accounts.audit`) and clear the credential-check memory (`accounts.check_cache`).
"""

from accounts.services.developers import (
    activate_developer,
    add_developer,
    check_new_developer,
    deactivate_developer,
    parse_grace,
    revoke_all_keys,
    revoke_key,
    rotate_key,
    set_key_expiry,
)
from accounts.services.organizations import (
    apply_subscription_state,
    create_organization,
    set_seats,
    set_status,
    update_organization,
    valid_seats,
    valid_status,
)
from accounts.services.usage import arecord_usages, record_usage, record_usages

__all__ = [
    "activate_developer",
    "add_developer",
    "apply_subscription_state",
    "arecord_usages",
    "check_new_developer",
    "create_organization",
    "deactivate_developer",
    "parse_grace",
    "record_usage",
    "record_usages",
    "revoke_all_keys",
    "revoke_key",
    "rotate_key",
    "set_key_expiry",
    "set_seats",
    "set_status",
    "update_organization",
    "valid_seats",
    "valid_status",
]
