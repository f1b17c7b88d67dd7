"""Metrics through ir_measures, TREC run files, and the run report."""

from genir.evaluation.metrics import DEFAULT_MEASURES, evaluate, per_query
from genir.evaluation.trec import read_run, write_run

__all__ = ["DEFAULT_MEASURES", "evaluate", "per_query", "read_run", "write_run"]
