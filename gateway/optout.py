"""The way out, added to every advertising message by the channel's own convention.

SMS: a short line after the text (`[sms] opt_out_text`, e.g. "Отказ: {link}" or
"Отказ: СТОП на 1234"); e-mail: List-Unsubscribe and List-Unsubscribe-Post (RFC 8058)
headers pointing at the client's one-click link, besides the link in the layout's footer;
Telegram: a last line linking to the page. Added when the message is queued, so the outbox
holds exactly what is sent.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.consent import ADVERTISING


@dataclass(frozen=True, slots=True)
class OptOut:
    sms_text: str = "Отказ: {link}"
    """Appended to advertising SMS; `{link}` is the client's unsubscribe link; "": nothing."""
    telegram_label: str = "Отписаться от рассылки"
    """The words of the link under an advertising Telegram message."""

    def apply(
        self, content: dict[str, dict[str, str]], kind: str, context: Mapping[str, Any]
    ) -> dict[str, dict[str, str]]:
        """The rendered content with the way out added for `kind`; `content` is changed."""
        if kind != ADVERTISING:
            return content
        links = context.get("links") or {}
        link = links.get("unsubscribe") if isinstance(links, Mapping) else None
        sms = content.get("sms")
        if sms is not None and self.sms_text and (link or "{link}" not in self.sms_text):
            sms["text"] = f"{sms['text']} {self.sms_text.format(link=link)}"
        telegram = content.get("telegram")
        if telegram is not None and link:
            href = html.escape(link, quote=True)
            label = html.escape(self.telegram_label, quote=False)
            telegram["text"] = f'{telegram["text"]}\n\n<a href="{href}">{label}</a>'
        email = content.get("email")
        if email is not None and link:
            email["list_unsubscribe"] = f"{link}?channel=email"
        return content
