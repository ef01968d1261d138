"""The client bot in Telegram (aiogram 3): routers, middlewares, and the bot role's run."""
