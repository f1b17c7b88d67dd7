"""Every retriever answers one contract: ``search(query, k)`` and ``batch_search(queries, k)`` -> ranked Hits."""

from genir.search.base import Hit, Results, Searcher

__all__ = ["Hit", "Results", "Searcher"]
