"""The Redis side of a job: the key schema, the Celery pointer messages, and the fenced job transitions."""

from toolbag.store.jobstore import WAIT_CHUNK_S, JobStore, NewJob, Transition, text
from toolbag.store.keys import Keys

__all__ = ["WAIT_CHUNK_S", "JobStore", "Keys", "NewJob", "Transition", "text"]
