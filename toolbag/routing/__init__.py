"""Which model serves a job: the route's candidates, what a job needs of a model, and live model health."""

from toolbag.routing.router import Needs, NoCandidate, Router

__all__ = ["Needs", "NoCandidate", "Router"]
