"""Dense bi-encoder search: a sentence-transformers model (the bundled all-MiniLM-L6-v2 by default)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from genir.data.collection import Document
from genir.models.pretrained import bundled_minilm_path
from genir.search.base import Hit, Results, Searcher


def load_sentence_encoder(model: str | None = None, max_seq_length: int = 256):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(model or bundled_minilm_path(), device="cpu" if not torch.cuda.is_available() else None)
    st.max_seq_length = max_seq_length
    return st


class DenseSearcher(Searcher):
    """Cosine similarity (normalised embeddings), exact search by a matrix product."""

    name = "Dense"

    def __init__(self, docs: list[Document], model: str | None = None, max_seq_length: int = 256,
                 batch_size: int = 64, encoder=None, doc_embeddings: np.ndarray | None = None,
                 show_progress: bool = True):
        self.encoder = encoder or load_sentence_encoder(model, max_seq_length)
        self.doc_ids = [d.id for d in docs]
        self.batch_size = batch_size
        if doc_embeddings is None:
            doc_embeddings = self.encoder.encode([d.full_text for d in docs], batch_size=batch_size,
                                                 normalize_embeddings=True, convert_to_numpy=True,
                                                 show_progress_bar=show_progress)
        self.doc_embeddings = np.asarray(doc_embeddings, dtype=np.float32)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self.encoder.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                   convert_to_numpy=True, show_progress_bar=False)

    def batch_search(self, queries: Mapping[str, str], k: int = 100) -> Results:
        qids = list(queries)
        q = self.encode_queries([queries[x] for x in qids])
        scores = torch.from_numpy(q @ self.doc_embeddings.T)
        top = torch.topk(scores, min(k, scores.shape[1]), dim=1)
        return {qid: [Hit(self.doc_ids[j], float(s)) for s, j in zip(top.values[i].tolist(), top.indices[i].tolist(),
                                                                        strict=True)]
                for i, qid in enumerate(qids)}

    def index_bytes(self) -> int:
        return int(self.doc_embeddings.nbytes)
