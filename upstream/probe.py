"""One look at an upstream: started once, asked what it offers, stopped (`manage.py check`, `manage.py
mcp_upstream`)."""

from __future__ import annotations

import dataclasses
import tempfile
import uuid
from pathlib import Path

from upstream.config import UpstreamConfig
from upstream.connection import Upstream
from upstream.listing import Listing


async def probe(config: UpstreamConfig) -> Listing:
    """Start the upstream once, read what it offers, stop it.

    An organization-scoped upstream is started as for a placeholder organization (the nil UUID) in a temporary data
    folder. Raises `upstream_unavailable` / `upstream_timeout` as a call would.
    """
    with tempfile.TemporaryDirectory(prefix="hotcross-upstream-probe-") as scratch:
        organization_id = None
        if config.scope == "organization":
            organization_id = str(uuid.UUID(int=0))
            config = dataclasses.replace(config, data_dir=Path(scratch))
        upstream = Upstream(config, organization_id=organization_id)
        try:
            await upstream.session()
            return upstream.listing
        finally:
            await upstream.stop()
