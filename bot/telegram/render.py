"""Screens as Telegram draws them: inline keyboards, the reply menu, the contact button."""

from __future__ import annotations

import json

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
)

from bot.screens.menu import menu_labels
from bot.screens.ui import MenuKey, Rows, Screen
from bot.texts import Texts

Markup = InlineKeyboardMarkup | ReplyKeyboardMarkup | ReplyKeyboardRemove

_MENU_LAYOUT = (
    (MenuKey.BALANCE, MenuKey.CARD),
    (MenuKey.CARS, MenuKey.BOOK),
    (MenuKey.SETTINGS, MenuKey.HELP),
)


def inline(rows: Rows) -> InlineKeyboardMarkup | None:
    if not rows:
        return None
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(text=b.text, callback_data=b.data)
                if b.url is None
                else InlineKeyboardButton(text=b.text, url=b.url)
                for b in row
            ]
            for row in rows
        ]
    )


def inline_json(rows: Rows) -> str:
    """An inline keyboard as the outbox stores it for the telegram channel."""
    markup = inline(rows)
    assert markup is not None
    return json.dumps(markup.model_dump(mode="json", exclude_none=True), ensure_ascii=False)


def main_menu(t: Texts) -> ReplyKeyboardMarkup:
    labels = menu_labels(t)
    return ReplyKeyboardMarkup(
        keyboard=[[KeyboardButton(text=labels[key]) for key in row] for row in _MENU_LAYOUT],
        resize_keyboard=True,
        is_persistent=True,
    )


def markup(screen: Screen, t: Texts) -> Markup | None:
    if screen.buttons:
        return inline(screen.buttons)
    if screen.ask_contact:
        button = KeyboardButton(text=screen.ask_contact, request_contact=True)
        return ReplyKeyboardMarkup(
            keyboard=[[button]], resize_keyboard=True, one_time_keyboard=True
        )
    if screen.menu:
        return main_menu(t)
    if screen.remove_keyboard:
        return ReplyKeyboardRemove()
    return None


async def send(bot: Bot, chat_id: int, screen: Screen, t: Texts) -> Message:
    return await bot.send_message(chat_id, screen.text, reply_markup=markup(screen, t))


async def edit(message: Message, screen: Screen, t: Texts) -> None:
    """Show `screen` in place of a message with inline buttons. One already showing it is
    left alone; one that cannot be edited (too old, gone) is answered anew. An edited
    message cannot carry the reply menu: the menu stays as the last message left it."""
    keyboard = inline(screen.buttons)
    try:
        await message.edit_text(screen.text, reply_markup=keyboard)
    except TelegramBadRequest as exc:
        if "not modified" in exc.message:
            return
        await message.answer(screen.text, reply_markup=markup(screen, t))


async def answer(message: Message, screen: Screen, t: Texts) -> Message:
    """Answer in the chat of `message`."""
    return await message.answer(screen.text, reply_markup=markup(screen, t))
