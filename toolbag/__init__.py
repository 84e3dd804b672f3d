"""toolbag: an open multi-model job fleet on Celery + Redis.

The producer's names are importable from here::

    from toolbag import Client, JobRequest, JobStatus, SubmitError

They load on first use, so ``import toolbag`` stays cheap for a worker that needs none of them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Client": "toolbag.client",
    "Job": "toolbag.client",
    "JobRequest": "toolbag.client",
    "JobResult": "toolbag.jobs",
    "JobStatus": "toolbag.jobs",
    "JobRecord": "toolbag.jobs",
    "JobError": "toolbag.jobs",
    "JobNotFound": "toolbag.jobs",
    "ResultTimeout": "toolbag.jobs",
    "SubmitError": "toolbag.jobs",
    "Config": "toolbag.config",
    "ConfigError": "toolbag.config",
    "Tier": "toolbag.config",
    "load_config": "toolbag.config",
    "ToolbagError": "toolbag.errors",
}

__all__ = [
    "Client",
    "Config",
    "ConfigError",
    "Job",
    "JobError",
    "JobNotFound",
    "JobRecord",
    "JobRequest",
    "JobResult",
    "JobStatus",
    "ResultTimeout",
    "SubmitError",
    "Tier",
    "ToolbagError",
    "load_config",
]

if TYPE_CHECKING:
    from toolbag.client import Client, Job, JobRequest
    from toolbag.config import Config, ConfigError, Tier, load_config
    from toolbag.errors import ToolbagError
    from toolbag.jobs import JobError, JobNotFound, JobRecord, JobResult, JobStatus, ResultTimeout, SubmitError


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'toolbag' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
