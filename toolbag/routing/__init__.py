"""Which model serves a job: the route's candidates, what a job needs of a model, and live model health."""

from toolbag.routing.router import Bounds, Choice, Needs, NoCandidate, Router

__all__ = ["Choice", "Bounds", "Needs", "NoCandidate", "Router"]
