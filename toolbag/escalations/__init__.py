"""The human inbox: jobs every candidate balked at, and what a person decides about them."""

from toolbag.escalations.inbox import Escalation, Inbox, InboxError
from toolbag.escalations.outbox import Outbox, OutboxSender

__all__ = ["Escalation", "Inbox", "InboxError", "Outbox", "OutboxSender"]
