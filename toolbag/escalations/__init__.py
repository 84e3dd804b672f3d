"""The human inbox: jobs every candidate balked at, and what a person decides about them."""

from toolbag.escalations.inbox import Escalation, Inbox, InboxError, notify_webhook

__all__ = ["Escalation", "Inbox", "InboxError", "notify_webhook"]
