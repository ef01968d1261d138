"""What the client bots show, independent of the messenger: texts, buttons and menus.

A screen is built from what a crm/ service answered and a `Texts` (the client's language);
the Telegram adapter (bot/telegram) renders it, and a second messenger's adapter renders
the same screens. No screen reads the database or knows a messenger's API.
"""
