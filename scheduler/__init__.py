"""APScheduler jobs: greetings, reminders, survey invitations, bonus expiry.

Each job is a few lines that call one crm/ service with the clock and a session.
"""
