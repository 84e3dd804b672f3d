"""``celery -A workers …`` finds the fleet's app here (Celery looks for a ``celery`` module in the package)."""

from __future__ import annotations

from workers.app import app

__all__ = ["app"]
