"""The back office's HTTP API for servers that run elsewhere (the product on a developer's machine): key check and
usage reports, with only the developer's key. Plain Django views with JSON bodies (`api.views`)."""
