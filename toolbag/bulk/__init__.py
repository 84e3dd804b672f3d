"""Bulk processing: a file or an iterable through the fleet, pipelined, bounded, resumable.

``Client.map(skill, inputs)`` yields a :class:`MapResult` per input as jobs finish; ``toolbag batch run``
(:class:`BatchRun`) runs a JSONL or CSV file to an append-only results file and an errors file.
"""

from toolbag.bulk.pipeline import Finished, MapResult, Pipeline, Rejected, Submitted
from toolbag.bulk.runner import BatchError, BatchRun, BatchSpec, Counts

__all__ = ["BatchError", "BatchRun", "BatchSpec", "Counts", "Finished", "MapResult", "Pipeline", "Rejected",
           "Submitted"]
