"""genir: generative retrieval, evaluated side by side with BM25 and dense retrieval.

The data flows one way: collection -> docids -> model -> training -> search -> evaluation -> report.
"""

from genir.data.collection import Collection, DataError, Document, load_beir
from genir.data.registry import load_dataset
from genir.search.base import Hit, Searcher

__version__ = "0.1.0"
__all__ = ["Collection", "DataError", "Document", "Hit", "Searcher", "load_beir", "load_dataset", "__version__"]
