"""Storage: SQLAlchemy 2 async models, engine and sessions, Alembic migrations.

Imports nothing of ours: every other layer builds on it.
"""

from storage.bonuses import (
    BonusLot,
    BonusMovement,
    BonusPosting,
    CardEvent,
    DiscountCard,
    Referral,
)
from storage.booking import Booking, InboundContact
from storage.engine import (
    ShortTransactions,
    create_engine,
    make_session_factory,
    normalize_database_url,
    read_only,
)
from storage.feedback import Complaint, SurveyAnswer, TelegramFile
from storage.migrate import current_revision, upgrade
from storage.models import (
    AppSecret,
    Base,
    Branch,
    BranchDepartment,
    Car,
    Client,
    ClientAlias,
    ClientConsent,
    ClientTag,
    ConsentEvent,
    OdometerReading,
    Visit,
)
from storage.outbox import (
    Campaign,
    ChannelUnreachable,
    DeliveryReceipt,
    InboundSms,
    Message,
    MessageAttempt,
    MessageTemplate,
)
from storage.scheduling import ClassSnapshot, JobRun

__all__ = [
    "AppSecret",
    "Base",
    "BonusLot",
    "BonusMovement",
    "BonusPosting",
    "Booking",
    "Branch",
    "BranchDepartment",
    "Campaign",
    "Car",
    "CardEvent",
    "ChannelUnreachable",
    "ClassSnapshot",
    "Client",
    "ClientAlias",
    "ClientConsent",
    "ClientTag",
    "Complaint",
    "ConsentEvent",
    "DeliveryReceipt",
    "DiscountCard",
    "InboundContact",
    "InboundSms",
    "JobRun",
    "Message",
    "MessageAttempt",
    "MessageTemplate",
    "OdometerReading",
    "Referral",
    "ShortTransactions",
    "SurveyAnswer",
    "TelegramFile",
    "Visit",
    "create_engine",
    "current_revision",
    "make_session_factory",
    "normalize_database_url",
    "read_only",
    "upgrade",
]
