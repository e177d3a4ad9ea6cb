"""The staff back office in Django's admin: organizations, developers, keys, seats and usage.

Thin on purpose: every write goes through `accounts.services` with `actor=request.user`, so the rules and messages
are the command line's and the services write the admin history (see `base.ServiceAdmin`). Rooms:

- `organizations`, `developers`: the two model admins (lists, pages, actions); `invitations`: the invitations owners
  sent and the alerts mailed to them (read-only but for revoking an invitation; listed on the organization page).
- `base`: what they share (writes through services, confirmed actions, refusals shown as messages).
- `pages`: the confirmation page and the one page a new key is shown on.
- `forms`, `display` (badges, links), `chart` (the day charts' geometry), `dashboard` (the index's figures and
  links, drawn by `hotcross.admin_site`), `registry` (a model's registered admin, asked what a user may do).
- OAuth's clients and grants have their pages in `oauth.admin`.

The admin site itself (titles, the dashboard index) is `hotcross.admin_site`.
"""

from accounts.admin import developers, invitations, organizations, plans

__all__ = ["developers", "invitations", "organizations", "plans"]
