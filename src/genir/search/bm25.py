"""BM25 with bm25s: English stopwords and the Snowball stemmer, k1 0.9 and b 0.4 as BEIR's Anserini runs."""

from __future__ import annotations

from collections.abc import Mapping

import bm25s
import numpy as np
import Stemmer
from bm25s.tokenization import Tokenizer

from genir.data.collection import Document
from genir.search.base import Hit, Results, Searcher


class BM25Searcher(Searcher):
    name = "BM25"

    def __init__(self, docs: list[Document], k1: float = 0.9, b: float = 0.4, stem: bool = True,
                 stopwords: str | None = "en", method: str = "lucene"):
        self.doc_ids = [d.id for d in docs]
        self.tokenizer = Tokenizer(stemmer=Stemmer.Stemmer("english") if stem else None,
                                   stopwords=stopwords or [])
        corpus_tokens = self.tokenizer.tokenize([d.full_text for d in docs], return_as="tuple",
                                                show_progress=False)
        self.retriever = bm25s.BM25(k1=k1, b=b, method=method)
        self.retriever.index(corpus_tokens, show_progress=False)

    def batch_search(self, queries: Mapping[str, str], k: int = 100) -> Results:
        qids = list(queries)
        tokens = self.tokenizer.tokenize([queries[q] for q in qids], update_vocab=False, return_as="ids",
                                         show_progress=False)
        k_eff = min(k, len(self.doc_ids))
        docs, scores = self.retriever.retrieve(tokens, k=k_eff, show_progress=False, n_threads=1)
        out: Results = {}
        for i, qid in enumerate(qids):
            out[qid] = [Hit(self.doc_ids[d], float(s)) for d, s in zip(docs[i], scores[i], strict=True) if s > 0]
        return out

    def index_bytes(self) -> int:
        return int(sum(np.asarray(v).nbytes for v in self.retriever.scores.values() if hasattr(v, "nbytes")))
