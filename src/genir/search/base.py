"""The Searcher contract shared by BM25, dense and every generative method (after Pyserini)."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import NamedTuple


class Hit(NamedTuple):
    doc_id: str
    score: float


Results = dict[str, list[Hit]]  # query id -> hits, best first


class Searcher(ABC):
    """``batch_search`` is the one method to implement; hits come best first, ties in the searcher's order."""

    name: str = "searcher"

    @abstractmethod
    def batch_search(self, queries: Mapping[str, str], k: int = 100) -> Results: ...

    def search(self, query: str, k: int = 10) -> list[Hit]:
        return self.batch_search({"q": query}, k)["q"]

    def index_bytes(self) -> int | None:
        """Bytes needed to answer queries, beyond the query encoder (None when not meaningful)."""
        return None


def timed_search(searcher: Searcher, queries: Mapping[str, str], k: int) -> tuple[Results, float]:
    """Results and queries per second, measured around one ``batch_search`` call."""
    start = time.perf_counter()
    results = searcher.batch_search(queries, k)
    return results, len(queries) / max(time.perf_counter() - start, 1e-9)
