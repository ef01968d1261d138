"""What a dispatcher did lately, per channel and outcome, for one log line a minute."""

from __future__ import annotations

from collections import Counter

OUTCOMES = ("sent", "failed", "retry", "paced", "halted")
"""In the order a line lists them."""


class SendTally:
    """Counts outcomes per channel until `take` reads and clears them."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()

    def add(self, channel: str, outcome: str) -> None:
        self._counts[channel, outcome] += 1

    def take(self) -> str | None:
        """The counts as one line ("telegram: sent 120, retry 2; sms: sent 5"), then zero
        them; None when nothing happened, so an idle dispatcher stays quiet."""
        if not self._counts:
            return None
        channels = sorted({channel for channel, _ in self._counts})
        parts = []
        for channel in channels:
            counts = [
                f"{outcome} {self._counts[channel, outcome]}"
                for outcome in OUTCOMES
                if self._counts[channel, outcome]
            ]
            parts.append(f"{channel}: {', '.join(counts)}")
        self._counts.clear()
        return "; ".join(parts)
