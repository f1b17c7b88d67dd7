"""Collections (corpus, queries, graded qrels), their loaders, registry, splits and pseudo-queries."""

from genir.data.collection import Collection, DataError, Document, load_beir
from genir.data.pseudo_queries import Doc2Query, DocAsQuery, load_pseudo_queries
from genir.data.registry import load_dataset, resolve_dataset
from genir.data.splits import seen_unseen

__all__ = [
    "Collection", "DataError", "Document", "load_beir", "load_dataset", "resolve_dataset", "seen_unseen",
    "DocAsQuery", "Doc2Query", "load_pseudo_queries",
]
