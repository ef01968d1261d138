"""The messaging core: render -> outbox -> dispatch -> channels (Telegram, SMS, e-mail).

Never imports crm/: the domain calls down into the gateway, not the other way round.
"""
