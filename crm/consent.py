"""Consent vocabulary: what a client agreed to receive, per channel and purpose.

A consent row for channel `all` is a blanket word (what a 1C export's single "consent to
mailings" flag means); a row for a named channel overrides it for that channel. With no row
at all, service messages are allowed and advertising is not.
"""

from __future__ import annotations

SERVICE = "service"
ADVERTISING = "advertising"
PURPOSES = (SERVICE, ADVERTISING)

ALL_CHANNELS = "all"
