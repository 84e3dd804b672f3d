"""toolbag: an open multi-model job fleet on Celery + Redis."""

__version__ = "0.1.0"
