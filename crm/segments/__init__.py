"""Segments: named, parameterised queries that say which clients a campaign talks to.

A segment is SQL (a SELECT of client ids), evaluated in the database, never a Python loop
over all clients. Each takes its parameters as text (`k=v` from the command line or the
staff chat) and refuses ones it does not know.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from sqlalchemy import Select, select

from storage.models import Client


class SegmentError(ValueError):
    """An unknown segment or a parameter it cannot take."""


SegmentQuery = Select[tuple[int]]


def all_clients(params: Mapping[str, str]) -> SegmentQuery:
    """Every client on file (those without a contact are skipped later, with the reason)."""
    _no_params("all", params)
    return select(Client.id)


SEGMENTS: Mapping[str, Callable[[Mapping[str, str]], SegmentQuery]] = {"all": all_clients}


def segment_query(name: str, params: Mapping[str, str]) -> SegmentQuery:
    try:
        build = SEGMENTS[name]
    except KeyError:
        known = ", ".join(sorted(SEGMENTS))
        raise SegmentError(f"unknown segment {name!r}: known segments are {known}") from None
    return build(params)


def _no_params(segment: str, params: Mapping[str, str]) -> None:
    if params:
        names = ", ".join(sorted(params))
        raise SegmentError(f"segment {segment!r} takes no parameters, got {names}")
