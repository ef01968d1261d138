"""Consent vocabulary for the domain; the rule itself lives with the dispatcher that applies it.

See `gateway.consent`: a row for channel `all` is a blanket word, a named channel overrides
it, and with no row service messages are allowed and advertising is not.
"""

from __future__ import annotations

from gateway.consent import ADVERTISING, ALL_CHANNELS, PURPOSES, SERVICE, allowed

__all__ = ["ADVERTISING", "ALL_CHANNELS", "PURPOSES", "SERVICE", "allowed"]
