"""One router per feature; `bot.telegram.app.build_dispatcher` composes them in order."""
