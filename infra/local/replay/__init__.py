"""The offline replay source: the replay universe's real daily bars (and genuine recorded Yahoo answer shapes)
served at the HTTP layer, one replay day at a time (see README.md here).

Local-only (never shipped in the Lambda package). `install_if_configured()` runs in each local Lambda
worker before the app is imported, and in tests.
"""

from __future__ import annotations

import os

from infra.local.replay.transport import YahooReplayTransport


def install() -> YahooReplayTransport:
    from chalicelib import bootstrap

    transport = YahooReplayTransport()
    bootstrap.install_replay_transport(transport)
    return transport


def install_if_configured() -> YahooReplayTransport | None:
    if os.environ.get("MARKET_DATA_SOURCE", "").strip().lower() == "replay":
        return install()
    return None
