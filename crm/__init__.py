"""The domain: clients, cars, visits, segments, bonuses, campaigns. No aiogram or aiohttp here."""
