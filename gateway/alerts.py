"""Alerts: what staff must hear about at once (a channel that stopped sending).

The dispatcher calls `alert(text)`; where it goes is the composition root's choice: the log
always, and the staff Telegram chat when `[telegram] staff_chat_id` is set. An alert that
cannot be delivered is logged and never stops the sending.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

log = logging.getLogger("autoloyal.alerts")


class Alerts(Protocol):
    async def alert(self, text: str) -> None: ...


class LogAlerts:
    """Alerts into the log, at ERROR: the default, and what every other kind also does."""

    async def alert(self, text: str) -> None:
        log.error("ALERT: %s", text)


class ChatAlerts(LogAlerts):
    """Alerts into the log and to a chat through `post` (e.g. the staff Telegram chat)."""

    def __init__(self, post: Callable[[str], Awaitable[None]]) -> None:
        self._post = post

    async def alert(self, text: str) -> None:
        await super().alert(text)
        try:
            await self._post(text)
        except Exception:
            log.exception("could not deliver the alert to the staff chat")
