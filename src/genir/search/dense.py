"""Dense bi-encoder search: a sentence-transformers model (the bundled all-MiniLM-L6-v2 by default)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from genir.data.collection import DataError, Document, read_json_object
from genir.io import atomic_path, save_npy
from genir.models.pooling import mean_pooled
from genir.models.pretrained import bundled_minilm_path
from genir.search.base import Hit, Results, Searcher
from genir.search.shared_encoding import QueryEncoder

PARAMS, EMBEDDINGS = "dense.json", "doc_embeddings.npy"
SAVED_ENCODER = "encoder"  # a fine-tuned encoder saved inside the folder


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
        self.query_encoder = self.encoder  # what encodes queries (another precision's: ``queries_in``)
        self.query_precision = "fp32"  # search.encoder_precision of the query encoder (``queries_in``)
        self.shared_encoding = None  # a SharedEncoding its queries go through (genir.search.shared_encoding)
        self.doc_ids = [d.id for d in docs]
        self.batch_size = batch_size
        if doc_embeddings is None:
            doc_embeddings = self.encoder.encode([d.full_text for d in docs], batch_size=batch_size,
                                                 normalize_embeddings=True, convert_to_numpy=True,
                                                 show_progress_bar=show_progress)
        self.doc_embeddings = np.asarray(doc_embeddings, dtype=np.float32)

    def save(self, folder: str | Path, model: str | None = None) -> None:
        """The document embeddings and their ids; the encoder as ``model`` names it (None: the bundled
        MiniLM), or, when ``model`` is None and the encoder was trained here, the encoder itself."""
        with atomic_path(folder) as tmp:
            tmp.mkdir(parents=True)
            save_npy(tmp / EMBEDDINGS, self.doc_embeddings)
            if model == SAVED_ENCODER:
                self.encoder.save(str(tmp / SAVED_ENCODER))
            (tmp / PARAMS).write_text(json.dumps({"model": model, "doc_ids": self.doc_ids,
                                                  "max_seq_length": self.encoder.max_seq_length}), encoding="utf-8")

    @classmethod
    def load(cls, folder: str | Path) -> DenseSearcher:
        folder = Path(folder)
        params = read_json_object(folder / PARAMS)
        try:
            model = params["model"]
            model = str(folder / SAVED_ENCODER) if model == SAVED_ENCODER else model
            embeddings = np.load(folder / EMBEDDINGS, allow_pickle=False)
            ids = [str(d) for d in params["doc_ids"]]
            if embeddings.shape[0] != len(ids):
                raise ValueError(f"{embeddings.shape[0]} embeddings for {len(ids)} documents")
            docs = [Document(d, "") for d in ids]
            return cls(docs, model, int(params["max_seq_length"]), doc_embeddings=embeddings)
        except (KeyError, TypeError, OSError, ValueError) as e:
            raise DataError(folder, None, f"not a readable dense index ({e})") from None

    def queries_in(self, precision: str) -> DenseSearcher:
        """Queries encoded in ``search.encoder_precision`` (an int8 copy of the encoder, or the encoder under
        bf16 autocast); the documents' embeddings stay as they were made (fp32), and ``save`` keeps the fp32
        encoder."""
        from genir.models.precision import PRECISIONS, int8_copy

        if precision not in PRECISIONS:
            raise ValueError(f"encoder precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
        self.query_precision = precision
        self.query_encoder = int8_copy(self.encoder) if precision == "int8" else self.encoder
        return self

    def _query_pass(self) -> contextlib.AbstractContextManager:
        """bf16: the query encoder's pass under autocast (pooled and scored in fp32 after it)."""
        from genir.models.precision import autocast

        return autocast(self.query_encoder) if self.query_precision == "bf16" else contextlib.nullcontext()

    def shared_query_encoder(self) -> QueryEncoder | None:
        """The encoder's transformer, when queries are its mean-pooled, normalised token states (what the
        bundled MiniLM does); None for any other pipeline (an int8 copy is not shared: see its key)."""
        modules = list(self.query_encoder)
        if [type(m).__name__ for m in modules] != ["Transformer", "Pooling", "Normalize"]:
            return None
        if modules[1].get_config_dict().get("pooling_mode") != "mean":
            return None
        transformer = modules[0].auto_model

        def forward(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            with self._query_pass():
                return transformer(input_ids=ids, attention_mask=mask).last_hidden_state.float()

        device = next(transformer.parameters()).device
        return QueryEncoder(self.query_encoder.tokenizer, forward, transformer, self.query_encoder.max_seq_length,
                            device, self.query_precision)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        if self.shared_encoding is not None:
            states, mask = self.shared_encoding.encode(texts, self.query_encoder.max_seq_length)
            return mean_pooled(states, mask).float().cpu().numpy()
        with self._query_pass():
            out = self.query_encoder.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                            convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(out, dtype=np.float32)

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
