"""Consent: whether a client agreed to receive a kind of message through a channel.

A consent row for channel `all` is a blanket word (what a 1C export's single "consent to
mailings" flag means); a row for a named channel overrides it for that channel. With no row
at all, service messages are allowed and advertising is not. Anyone can opt out of either.
"""

from __future__ import annotations

from collections.abc import Mapping

SERVICE = "service"
ADVERTISING = "advertising"
PURPOSES = (SERVICE, ADVERTISING)

ALL_CHANNELS = "all"

ConsentRows = Mapping[tuple[str, str], bool]
"""{(channel, purpose): granted} for one client, as stored in client_consent."""


def allowed(consents: ConsentRows, channel: str, purpose: str) -> bool:
    """May a message of `purpose` go to this client through `channel`?"""
    for scope in (channel, ALL_CHANNELS):
        granted = consents.get((scope, purpose))
        if granted is not None:
            return granted
    return purpose == SERVICE


def refusal(consents: ConsentRows, channel: str, purpose: str) -> str:
    """The reason recorded when consent stops a message: a client who said no to this
    channel (an unsubscribe, a stop word) reads differently from one who never said yes."""
    if purpose != ADVERTISING:
        return f"{channel}: the client opted out of service messages"
    if consents.get((channel, purpose)) is False:
        return f"{channel}: the client unsubscribed from advertising"
    return f"{channel}: no consent to advertising"
