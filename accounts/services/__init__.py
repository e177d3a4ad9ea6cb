"""Every write of the accounts domain. The admin, the command line, the MCP bridge and the Stripe webhooks call these
and hold no rules of their own.

One API (`from accounts import services; services.add_developer(...)`), kept in modules by subject:
`organizations` (status, seats, a subscription's state), `members` (sign-up, invitations, roles:
what owners and admins do on /org/), `developers` (developers, keys, seats taken), `plans` (plans,
an organization's plan), `usage` (usage events), `usage_spool` (the events a stopping server could not write) and
`usage_upkeep` (the rollups' rebuild, partitions, retention). Services take keyword arguments, validate, lock what
they change, record the admin history (`accounts.audit`) and clear the credential-check memory
(`accounts.check_cache`). The key check's last-used times are written behind by `accounts.last_used`, which keeps
that rule.
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
    sign_out_everywhere,
)
from accounts.services.members import (
    accept_invitation,
    activate_member,
    change_role,
    deactivate_member,
    give_up_seat,
    invitation_for,
    invite,
    remove_member,
    require_manager,
    resend_invitation,
    revoke_invitation,
    revoke_member_key,
    rotate_member_key,
    set_role,
    signup_plans,
    signup_seat_bounds,
    staff_revoke_invitation,
    start_organization,
    take_seat,
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
from accounts.services.plans import clean_tool_patterns, save_plan, set_plan
from accounts.services.usage import arecord_usages, record_usage, record_usages
from accounts.services.usage_spool import load_spooled_usages, spill_usages
from accounts.services.usage_upkeep import create_usage_partitions, prune_raw_usage, rebuild_rollups

__all__ = [
    "accept_invitation",
    "activate_developer",
    "activate_member",
    "add_developer",
    "apply_subscription_state",
    "arecord_usages",
    "change_role",
    "check_new_developer",
    "clean_tool_patterns",
    "create_organization",
    "create_usage_partitions",
    "deactivate_developer",
    "deactivate_member",
    "give_up_seat",
    "invitation_for",
    "invite",
    "load_spooled_usages",
    "parse_grace",
    "prune_raw_usage",
    "rebuild_rollups",
    "record_usage",
    "record_usages",
    "remove_member",
    "require_manager",
    "resend_invitation",
    "revoke_all_keys",
    "revoke_invitation",
    "revoke_key",
    "revoke_member_key",
    "rotate_key",
    "rotate_member_key",
    "save_plan",
    "set_key_expiry",
    "set_plan",
    "set_role",
    "set_seats",
    "set_status",
    "sign_out_everywhere",
    "signup_plans",
    "signup_seat_bounds",
    "spill_usages",
    "staff_revoke_invitation",
    "start_organization",
    "take_seat",
    "update_organization",
    "valid_seats",
    "valid_status",
]
