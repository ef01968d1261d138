"""Errors a caller can cause, by what kind of answer they deserve.

The HTTP API turns them into 400, 404 and 409; the CLI into one line with exit code 2.
`field` names the input that was wrong, when one was.
"""

from __future__ import annotations


class DomainError(ValueError):
    """The request cannot be done as asked (bad input): HTTP 400."""

    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        if code is not None:
            self.code = code


class NotFound(DomainError):
    """What the request names does not exist: HTTP 404."""

    code = "not_found"


class Conflict(DomainError):
    """The request contradicts what is already recorded: HTTP 409."""

    code = "conflict"
