"""The supervisor: what happens after an attempt that did not succeed (``decisions``: the pure table;
``service``: applying it), and the sweeps that keep jobs moving (``sweeps``)."""

from toolbag.supervisor.decisions import Decision, Situation, decide
from toolbag.supervisor.service import Supervisor
from toolbag.supervisor.sweeps import Sweeper

__all__ = ["Decision", "Situation", "Supervisor", "Sweeper", "decide"]
