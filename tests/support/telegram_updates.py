"""Raw Update dicts as Telegram sends them, for conversations with a bot through FakeBotAPI.

Each builder answers an update without "update_id": `FakeBotAPI.push_update` numbers it.
Message ids come from one module-wide counter, so no two built messages share one.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from types import EllipsisType
from typing import Any

# The bot FakeBotAPI() plays by default: its getMe, and "from" of its messages.
BOT_USER: dict[str, Any] = {
    "id": 123456,
    "is_bot": True,
    "first_name": "autoloyal test",
    "username": "autoloyal_test_bot",
}
GROUP_TITLE = "Группа"

_message_ids = itertools.count(1)
_callback_ids = itertools.count(1)
_file_numbers = itertools.count(1)


@dataclass(frozen=True)
class TelegramUser:
    """A person writing to the bot."""

    id: int
    first_name: str
    last_name: str | None = None
    username: str | None = None
    language_code: str = "ru"

    def as_dict(self) -> dict[str, Any]:
        """The User object of "from"."""
        user: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        for key in ("last_name", "username", "language_code"):
            if getattr(self, key):
                user[key] = getattr(self, key)
        return user


def next_message_id() -> int:
    return next(_message_ids)


def _chat(user: TelegramUser, chat_id: int | None, title: str = GROUP_TITLE) -> dict[str, Any]:
    """The private chat with `user`, or the group `chat_id` (negative, as Telegram's are)."""
    if chat_id is None or chat_id == user.id:
        chat: dict[str, Any] = {"id": user.id, "type": "private", "first_name": user.first_name}
        if user.last_name:
            chat["last_name"] = user.last_name
        if user.username:
            chat["username"] = user.username
        return chat
    if chat_id > 0:
        raise ValueError(f"chat_id {chat_id}: a private chat is the user's own id, groups are < 0")
    return {"id": chat_id, "type": "supergroup", "title": title}


def _message(user: TelegramUser, chat_id: int | None, **content: Any) -> dict[str, Any]:
    return {
        "message_id": next_message_id(),
        "from": user.as_dict(),
        "chat": _chat(user, chat_id),
        "date": int(time.time()),
        **content,
    }


def _file(prefix: str) -> dict[str, Any]:
    number = next(_file_numbers)
    return {"file_id": f"user-{prefix}-{number}", "file_unique_id": f"uu-{prefix}-{number}"}


def text(user: TelegramUser, text: str, *, chat_id: int | None = None) -> dict[str, Any]:
    """A text message from `user`: in the private chat, or in group `chat_id` (negative)."""
    return {"message": _message(user, chat_id, text=text)}


def command(
    user: TelegramUser, name: str, args: str = "", *, chat_id: int | None = None
) -> dict[str, Any]:
    """A command like "/start ref_ab12", with the bot_command entity over "/start"."""
    slash = "/" + name.removeprefix("/")
    body = f"{slash} {args}" if args else slash
    entity = {"type": "bot_command", "offset": 0, "length": len(slash.encode("utf-16-le")) // 2}
    return {"message": _message(user, chat_id, text=body, entities=[entity])}


def contact(
    user: TelegramUser,
    phone: str,
    *,
    user_id: int | EllipsisType | None = ...,
    first_name: str | None = None,
) -> dict[str, Any]:
    """A shared contact: by default the user's own (user_id = user.id); user_id=None: no id."""
    card: dict[str, Any] = {"phone_number": phone, "first_name": first_name or user.first_name}
    own = user_id is ... or user_id == user.id
    if own and first_name is None and user.last_name:
        card["last_name"] = user.last_name
    if user_id is ...:
        card["user_id"] = user.id
    elif user_id is not None:
        card["user_id"] = user_id
    return {"message": _message(user, None, contact=card)}


def sticker(user: TelegramUser) -> dict[str, Any]:
    """A sticker in the private chat."""
    card = _file("sticker") | {
        "type": "regular",
        "width": 512,
        "height": 512,
        "is_animated": False,
        "is_video": False,
        "emoji": "👍",
    }
    return {"message": _message(user, None, sticker=card)}


def photo(user: TelegramUser, *, caption: str | None = None) -> dict[str, Any]:
    """A photo in the private chat, in two sizes as Telegram sends them."""
    sizes = [_file("photo") | {"width": 90, "height": 67, "file_size": 1200}]
    sizes.append(_file("photo") | {"width": 1280, "height": 960, "file_size": 98000})
    content: dict[str, Any] = {"photo": sizes}
    if caption:
        content["caption"] = caption
    return {"message": _message(user, None, **content)}


def callback(
    user: TelegramUser,
    data: str,
    *,
    message_id: int,
    chat_id: int | None = None,
    message_text: str = "",
) -> dict[str, Any]:
    """A press on an inline button under the bot's message `message_id`."""
    chat = _chat(user, chat_id)
    message: dict[str, Any] = {
        "message_id": message_id,
        "from": dict(BOT_USER),
        "chat": chat,
        "date": int(time.time()),
    }
    if message_text:
        message["text"] = message_text
    query = {
        "id": str(4_000_000_000_000_000 + next(_callback_ids)),
        "from": user.as_dict(),
        "message": message,
        "chat_instance": str(abs(chat["id"]) * 7919 + 13),
        "data": data,
    }
    return {"callback_query": query}


def _member(status: str, user: dict[str, Any]) -> dict[str, Any]:
    """A ChatMember of `status` with the fields Telegram always sends for it."""
    member: dict[str, Any] = {"status": status, "user": user}
    if status == "kicked":
        member["until_date"] = 0
    elif status == "creator":
        member["is_anonymous"] = False
    elif status == "administrator":
        rights = (
            "can_manage_chat can_delete_messages can_manage_video_chats can_restrict_members "
            "can_promote_members can_change_info can_invite_users can_post_stories "
            "can_edit_stories can_delete_stories can_send_welcome_messages"
        )
        member |= {"can_be_edited": False, "is_anonymous": False}
        member |= dict.fromkeys(rights.split(), False) | {"can_manage_chat": True}
    elif status == "restricted":
        rights = (
            "can_send_messages can_send_audios can_send_documents can_send_photos "
            "can_send_videos can_send_video_notes can_send_voice_notes can_send_polls "
            "can_send_other_messages can_add_web_page_previews can_react_to_messages "
            "can_edit_tag can_change_info can_invite_users can_pin_messages can_manage_topics"
        )
        member |= {"is_member": True, "until_date": 0} | dict.fromkeys(rights.split(), False)
    elif status not in ("member", "left"):
        raise ValueError(f"unknown chat member status {status!r}")
    return member


def _my_chat_member(
    by_user: TelegramUser, chat: dict[str, Any], old: str, new: str
) -> dict[str, Any]:
    return {
        "my_chat_member": {
            "chat": chat,
            "from": by_user.as_dict(),
            "date": int(time.time()),
            "old_chat_member": _member(old, dict(BOT_USER)),
            "new_chat_member": _member(new, dict(BOT_USER)),
        }
    }


def my_chat_member(user: TelegramUser, old: str = "member", new: str = "kicked") -> dict[str, Any]:
    """The bot's status in the private chat changed: by default the user blocked the bot."""
    return _my_chat_member(user, _chat(user, None), old, new)


def bot_added_to_group(by_user: TelegramUser, chat_id: int, title: str = "Чат") -> dict[str, Any]:
    """`by_user` added the bot to group `chat_id` (negative)."""
    if chat_id >= 0:
        raise ValueError(f"chat_id {chat_id}: group ids are negative")
    return _my_chat_member(by_user, _chat(by_user, chat_id, title), "left", "member")
