"""The file sink: a channel with no credentials writes its messages to a JSON-lines file.

The embedded default needs no accounts: every message still goes through the whole
lifecycle (consent, quiet hours, caps, attempts), and lands as one line in
`<outbox dir>/<channel>.jsonl`, where the dealer can read what would have been sent.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from gateway.channels import Outgoing, Sender, SendResult, Sent, Transient


class FileSink:
    """Appends each message as a JSON line; the line's number is its provider id."""

    address_rate_per_second: float | None = None

    def __init__(
        self,
        name: str,
        folder: Path,
        *,
        rate_per_second: float | None = None,
    ) -> None:
        self.name = name
        self.path = folder / f"{name}.jsonl"
        self.destination = str(self.path)
        self.rate_per_second = rate_per_second
        self._lock = asyncio.Lock()
        self._lines: int | None = None

    def sender(self, account: str | None) -> Sender:
        """Any account asked for writes to the same file; the record names the file."""
        return Sender(f"file:{self.name}")

    async def send(self, message: Outgoing) -> SendResult:
        line = json.dumps(
            {
                "message_id": message.message_id,
                "client_id": message.client_id,
                "channel": message.channel,
                "address": message.address,
                "kind": message.kind,
                **message.content,
            },
            ensure_ascii=False,
        )
        async with self._lock:
            try:
                number = await asyncio.to_thread(self._append, line)
            except OSError as exc:
                return Transient(f"cannot write {self.path}: {exc.strerror}")
        return Sent(f"{self.path.name}:{number}", sender=f"file:{self.name}")

    def _append(self, line: str) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._lines is None:
            self._lines = _count_lines(self.path)
        with self.path.open("a", encoding="utf-8") as out:
            out.write(line + "\n")
        self._lines += 1
        return self._lines

    async def close(self) -> None:
        return None


def _count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as existing:
        return sum(1 for _ in existing)
