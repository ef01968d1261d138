"""The Telegram bot (aiogram 3): client conversations, staff commands, middlewares.

Handlers are thin: they parse the update, call one crm/ service and format the reply.
"""
