"""Tied-Atomic search (Nguyen and Yates, "Generative Retrieval as Dense Retrieval").

Atomic docids whose embeddings are the model's own encodings of the documents (Tied-Atomic Eq. 2):
W_docs = [h_doc1 ... h_docN], h = the decoder's last hidden state at the first decoding step. A query is
answered two ways that must agree exactly:
- generative: the document vectors become the output layer, one constrained decoding step (Eq. 1);
- dense: the same vectors in a faiss inner-product index (flat, or any faiss factory string).
Documents are added by encoding them and deleted by id, with no retraining; the index saves to a folder.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import faiss
import numpy as np
import torch
from tqdm.auto import tqdm

from genir.data.collection import Document
from genir.distributed import map_rows
from genir.docids.schemes import atomic_docids
from genir.docids.trie import PrefixTree
from genir.io import atomic_path, write_text
from genir.search.base import Hit, Results, Searcher


class TiedAtomicIndex:
    """Document vectors keyed by document id in a faiss inner-product index, with add/remove/save/load."""

    def __init__(self, dim: int, factory: str = "Flat"):
        self.dim, self.factory = dim, factory
        self.index = faiss.IndexIDMap2(faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT))
        self.id_of: dict[str, int] = {}
        self.doc_of: dict[int, str] = {}
        self.next_id = 0

    def __len__(self) -> int:
        return len(self.id_of)

    def add(self, doc_ids: list[str], vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(doc_ids), self.dim):
            raise ValueError(f"expected vectors of shape ({len(doc_ids)}, {self.dim}), got {vectors.shape}")
        dup = [d for d, n in Counter(doc_ids).items() if n > 1 or d in self.id_of]
        if dup:
            raise ValueError(f"documents already in the index (remove them first): {dup[:5]}")
        if not self.index.is_trained:
            self.index.train(vectors)
        ids = np.arange(self.next_id, self.next_id + len(doc_ids), dtype=np.int64)
        self.index.add_with_ids(vectors, ids)
        for d, i in zip(doc_ids, ids.tolist(), strict=True):
            self.id_of[d], self.doc_of[i] = i, d
        self.next_id += len(doc_ids)

    def remove(self, doc_ids: list[str]) -> int:
        missing = [d for d in doc_ids if d not in self.id_of]
        if missing:
            raise KeyError(f"not in the index: {missing[:5]}")
        ids = np.array([self.id_of.pop(d) for d in doc_ids], dtype=np.int64)
        for i in ids.tolist():
            del self.doc_of[i]
        return int(self.index.remove_ids(ids))

    def doc_ids(self) -> list[str]:
        return [self.doc_of[i] for i in sorted(self.doc_of)]

    def matrix(self) -> np.ndarray:
        """All vectors, in ``doc_ids()`` order (flat indexes only)."""
        return np.stack([self.index.reconstruct(int(i)) for i in sorted(self.doc_of)]) if self.doc_of \
            else np.zeros((0, self.dim), np.float32)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, list[list[str]]]:
        scores, ids = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, len(self)))
        return scores, [[self.doc_of[int(i)] for i in row if i >= 0] for row in ids]

    def nbytes(self) -> int:
        return int(faiss.serialize_index(self.index).nbytes)

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        with atomic_path(folder / "index.faiss") as tmp:
            faiss.write_index(self.index, str(tmp))
        write_text(folder / "index.json", json.dumps(
            {"dim": self.dim, "factory": self.factory, "next_id": self.next_id, "ids": self.id_of}))

    @classmethod
    def load(cls, folder: str | Path) -> TiedAtomicIndex:
        folder = Path(folder)
        meta = json.loads((folder / "index.json").read_text())
        self = cls.__new__(cls)
        self.dim, self.factory, self.next_id = meta["dim"], meta["factory"], meta["next_id"]
        self.index = faiss.read_index(str(folder / "index.faiss"))
        self.id_of = {d: int(i) for d, i in meta["ids"].items()}
        self.doc_of = {i: d for d, i in self.id_of.items()}
        return self


class TiedGenerativeView:
    """A DocidSeq2Seq whose output layer is the document vectors: generative search, Tied-Atomic Eq. 1-2."""

    def __init__(self, model, doc_vectors: torch.Tensor, residual_scale: float = 1.0):
        self.model, self.doc_vectors, self.bos = model, doc_vectors, model.bos
        self.residual_scale = residual_scale * model.query_residual_scale  # the query side's

    def eval(self):
        self.model.eval()
        return self

    def encode_texts(self, texts: list[str], max_length: int | None = None):
        return self.model.encode_texts(texts, max_length)

    def query_texts(self, texts: list[str]) -> list[str]:
        return self.model.query_texts(texts)

    def start(self, memory, memory_mask):
        sentence = self.model.sentence_vector(memory, memory_mask) if self.model.tied_residual else None
        return self.model.start(memory, memory_mask), sentence

    def step(self, state, prev_codes):
        inner, sentence = state
        hidden, inner = self.model.decoder.step(inner, self.model.code_embed(prev_codes))
        logits = self.model.tied_output(hidden, sentence, self.residual_scale) @ self.doc_vectors.T
        # the end-of-docid output exists in the trie's numbering but atomic docids never use it
        return torch.cat([logits, torch.full_like(logits[:, :1], float("-inf"))], 1), (inner, sentence)

    def reorder(self, state, rows):
        inner, sentence = state
        return self.model.reorder(inner, rows), None if sentence is None else sentence[rows]


class TiedAtomicSearcher(Searcher):
    """``mode="dense"`` (faiss) or ``"generative"`` (one constrained decoding step over tied docids).

    ``residual_scale`` (residual form only) scales the learned residual of queries and documents alike."""

    def __init__(self, model, index: TiedAtomicIndex, mode: str = "dense", batch_size: int = 64,
                 name: str = "tied-atomic", doc_max_length: int | None = None, residual_scale: float = 1.0,
                 show_progress: bool = False):
        if mode not in ("dense", "generative"):
            raise ValueError("mode must be 'dense' or 'generative'")
        self.model, self.index, self.mode, self.batch_size, self.name = model.eval(), index, mode, batch_size, name
        self.residual_scale, self.show_progress = residual_scale, show_progress
        self.doc_max_length = doc_max_length or model.config.doc_max_length
        self._generative = None  # a GenerativeSearcher over the current vectors, rebuilt when the index changes

    @torch.inference_mode()
    def encode(self, texts: list[str], max_length: int, desc: str | None = None, queries: bool = False) -> np.ndarray:
        """Document (or ``queries``) vectors; with ``desc`` (and ``show_progress``) a progress bar of that name."""
        vector = self.model.query_vector if queries else self.model.first_hidden
        out = []
        starts = range(0, len(texts), self.batch_size)
        for s in tqdm(starts, desc=desc, disable=not (desc and self.show_progress) or len(starts) < 2, leave=False):
            memory, mask = self.model.encode_texts(texts[s: s + self.batch_size], max_length)
            out.append(vector(memory, mask, self.residual_scale).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.index.dim), np.float32)

    def add_documents(self, docs: list[Document]) -> None:
        """Index new documents by encoding them: no retraining (the point of tying). Under several
        processes every rank calls this with the same documents: each encodes a shard, all get every vector."""
        texts = [d.full_text for d in docs]
        desc = f"encode documents ({self.name})"
        vectors = map_rows(lambda rows: torch.from_numpy(self.encode(list(rows), self.doc_max_length, desc)), texts)
        self.index.add([d.id for d in docs], vectors.numpy() if torch.is_tensor(vectors) else vectors)
        self._generative = None

    def remove_documents(self, doc_ids: list[str]) -> None:
        self.index.remove(doc_ids)
        self._generative = None

    def _generative_parts(self):
        if self._generative is None:
            from genir.search.generative import GenerativeSearcher

            ids = self.index.doc_ids()
            vectors = torch.from_numpy(self.index.matrix()).to(self.model.code_embed.weight.device)
            table = atomic_docids(ids)
            view = TiedGenerativeView(self.model, vectors, self.residual_scale)
            self._generative = GenerativeSearcher(view, table, beam=1, batch_size=self.batch_size,
                                                  normalize=False, trie=PrefixTree(table), name=self.name)
        return self._generative

    def batch_search(self, queries: Mapping[str, str], k: int = 100) -> Results:
        qids = list(queries)
        if self.mode == "generative":
            searcher = self._generative_parts()
            searcher.beam = min(k, len(self.index))  # one step: the beam is the top-k
            return searcher.batch_search(queries, k)
        vectors = self.encode([queries[q] for q in qids], self.model.config.query_max_length, queries=True)
        scores, docs = self.index.search(vectors, k)
        return {q: [Hit(d, float(s)) for d, s in zip(docs[i], scores[i].tolist(), strict=False)]
                for i, q in enumerate(qids)}

    def index_bytes(self) -> int:
        return self.index.nbytes()

    def inspect(self, query: str, k: int = 10, top: int = 10) -> dict:
        """One decoding step over the tied vectors: its top candidates are the hits (the docid inspector)."""
        searcher = self._generative_parts()
        searcher.beam = min(max(k, top), len(self.index))
        return searcher.inspect(query, k, top)

    def compare_modes(self, queries: Mapping[str, str], k: int = 100, tol: float = 1e-4) -> dict:
        """Run both modes on the same queries: do generative decoding and faiss give the same answers?

        Ranks are compared where scores are not tied (within ``tol``): tied documents may swap places.
        """
        mode = self.mode
        try:
            self.mode = "generative"
            gen = self.batch_search(queries, k)
            self.mode = "dense"
            dense = self.batch_search(queries, k)
        finally:
            self.mode = mode
        same_sets, max_diff = 0, 0.0
        for q in queries:
            g, d = gen[q], dense[q]
            diffs = [abs(a.score - b.score) for a, b in zip(g, d, strict=False)]
            max_diff = max([max_diff, *diffs])
            cut = len(d)  # compare the document sets above the last non-tied score boundary
            while cut > 1 and abs(d[cut - 1].score - d[cut - 2].score) <= tol:
                cut -= 1
            same_sets += len(g) == len(d) and {h.doc_id for h in g[: cut - 1]} == {h.doc_id for h in d[: cut - 1]}
        return {"queries": len(queries), "same_ranking": same_sets, "max_score_difference": max_diff}
