"""The tools every Hotcross MCP server offers: `whoami` and `usage`. Reads only, through `accounts.selectors`."""

from __future__ import annotations

import uuid
from typing import Any

from typing_extensions import TypedDict

from accounts.plans import terms_for
from accounts.selectors import get_developer, monthly_usage, seats_in_use
from mcp_bridge import db, metering
from mcp_bridge.auth import current_caller, current_credential
from mcp_bridge.tools import tool


class WhoAmI(TypedDict):
    developer_id: str
    email: str
    name: str
    organization_id: str
    organization_name: str
    subscription_status: str
    seats_used: int
    max_seats: int
    credential: str
    oauth_client: str | None
    plan: dict[str, Any]


class Usage(TypedDict):
    month: str
    since: str
    developer_calls: int
    by_tool: dict[str, int]
    organization_calls: int


@tool(title="Who am I", read_only=True)
def whoami(_developer_id: uuid.UUID, _organization_id: uuid.UUID) -> WhoAmI:
    """The developer calling, their organization, its subscription status and seats in use, the credential used
    (`api_key`, or `oauth` with the OAuth client's name), and the organization's plan with its limits."""
    credential, oauth_client = current_credential()
    developer = get_developer(_developer_id)
    organization = developer.organization
    return {
        "developer_id": str(developer.id),
        "email": developer.email,
        "name": developer.full_name,
        "organization_id": str(organization.id),
        "organization_name": organization.name,
        "subscription_status": organization.subscription_status,
        "seats_used": seats_in_use(organization),
        "max_seats": organization.max_seats,
        "credential": credential,
        "oauth_client": oauth_client,
        "plan": terms_for(current_caller().plan_id).describe(organization.max_seats),
    }


@tool(title="Usage this month", read_only=True)
async def usage(_developer_id: uuid.UUID, _organization_id: uuid.UUID) -> Usage:
    """Your tool calls recorded this calendar month (UTC), by tool, and your organization's total.

    Calls are counted once answered, so this call is not in its own figures.
    """
    # Calls this server answered a moment ago may still be buffered (`mcp_bridge.metering`): write them first.
    await metering.flush()
    month = await db.run(monthly_usage, developer_id=_developer_id, organization_id=_organization_id)
    return {
        "month": month.month,
        "since": month.since.isoformat(),
        "developer_calls": month.developer_total,
        "by_tool": month.by_tool,
        "organization_calls": month.organization_total,
    }


TOOLS = [whoami, usage]
