"""BM25 with bm25s: English stopwords and the Snowball stemmer, k1 0.9 and b 0.4 as BEIR's Anserini runs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import bm25s
import numpy as np
import Stemmer
from bm25s.tokenization import Tokenizer

from genir.data.collection import DataError, Document, read_json_object
from genir.io import atomic_path
from genir.search.base import Hit, Results, Searcher

PARAMS = "bm25.json"


class BM25Searcher(Searcher):
    name = "BM25"

    def __init__(self, docs: list[Document] | None, k1: float = 0.9, b: float = 0.4, stem: bool = True,
                 stopwords: str | None = "en", method: str = "lucene"):
        self.params = {"k1": k1, "b": b, "stem": stem, "stopwords": stopwords, "method": method}
        self.tokenizer = Tokenizer(stemmer=Stemmer.Stemmer("english") if stem else None,
                                   stopwords=stopwords or [])
        if docs is None:  # ``load`` fills the index in
            return
        self.doc_ids = [d.id for d in docs]
        corpus_tokens = self.tokenizer.tokenize([d.full_text for d in docs], return_as="tuple",
                                                show_progress=False)
        self.retriever = bm25s.BM25(k1=k1, b=b, method=method)
        self.retriever.index(corpus_tokens, show_progress=False)

    def save(self, folder: str | Path) -> None:
        """bm25s's own index and the tokenizer's vocabulary, beside genir's record of the parameters."""
        with atomic_path(folder) as tmp:
            tmp.mkdir(parents=True)
            self.retriever.save(str(tmp / "index"), show_progress=False)
            self.tokenizer.save_vocab(str(tmp / "index"))
            (tmp / PARAMS).write_text(json.dumps({**self.params, "doc_ids": self.doc_ids}), encoding="utf-8")

    @classmethod
    def load(cls, folder: str | Path) -> BM25Searcher:
        folder = Path(folder)
        params = read_json_object(folder / PARAMS)
        try:
            doc_ids = params.pop("doc_ids")
            searcher = cls(None, **params)
            searcher.doc_ids = [str(d) for d in doc_ids]
            searcher.retriever = bm25s.BM25.load(str(folder / "index"), show_progress=False)
            searcher.tokenizer.load_vocab(str(folder / "index"))
        except (KeyError, TypeError, OSError, ValueError) as e:
            raise DataError(folder, None, f"not a readable BM25 index ({e})") from None
        return searcher

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
