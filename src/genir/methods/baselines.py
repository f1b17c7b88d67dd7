"""The baselines every report sets the generative methods beside: BM25, dense (zero-shot) and dense
fine-tuned on the training queries, each a :class:`Baseline` that builds, saves and loads its index."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import ClassVar

import numpy as np

from genir.data.collection import Document
from genir.methods.base import train_config
from genir.search.base import Searcher
from genir.search.bm25 import BM25Searcher
from genir.search.dense import SAVED_ENCODER, DenseSearcher, load_sentence_encoder
from genir.training import Trainer, checkpoint
from genir.training.data import BiEncoderCollator, ContrastiveDataset
from genir.training.objectives import dense_contrastive_loss
from genir.workspace import Workspace


def with_precision(searcher: Searcher, precision: str) -> Searcher:
    """The searcher with its query encoder in ``search.encoder_precision`` (BM25 has no encoder)."""
    if precision != "fp32" and isinstance(searcher, DenseSearcher):
        return searcher.queries_in(precision)
    return searcher


class Baseline:
    """A system the generative methods are measured beside: built from the workspace, saved to its own
    folder (with a ``retriever.json`` record, by the pipeline), loaded from it; ``dense`` ones read the
    dense encoder. ``live``: a live index can build it over its changed corpus (``index``)."""

    name: ClassVar[str]
    description: ClassVar[str]
    dense: ClassVar[bool] = False
    live: ClassVar[bool] = True
    trains: ClassVar[tuple[str, ...]] = ()  # the settings its training reads (its stage's train part)

    def build(self, ws: Workspace) -> tuple[Searcher, str, dict]:
        """(searcher, label, extra result fields) over the workspace's corpus."""
        raise NotImplementedError

    def index(self, docs: list[Document], encoder=None, embeddings: np.ndarray | None = None) -> Searcher:
        """The same system over another set of documents (the live index)."""
        raise NotImplementedError

    def save(self, searcher: Searcher, folder: Path, ws: Workspace) -> None:
        searcher.save(folder)

    def load(self, folder: Path) -> Searcher:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<baseline {self.name}>"


class Bm25(Baseline):
    name, description = "bm25", "BM25 (bm25s: Lucene scoring, k1 0.9, b 0.4, English stemming and stopwords)"

    def build(self, ws: Workspace) -> tuple[Searcher, str, dict]:
        return ws.bm25(), "BM25", {}

    def index(self, docs: list[Document], encoder=None, embeddings: np.ndarray | None = None) -> Searcher:
        return BM25Searcher(docs)

    def load(self, folder: Path) -> Searcher:
        return BM25Searcher.load(folder)


def _dense_label(ws: Workspace, default: str) -> str:
    return ws.settings.dense.model or default


class Dense(Baseline):
    name, description = "dense", "dense retrieval with the zero-shot sentence encoder (dense.model), exact search"
    dense = True

    def build(self, ws: Workspace) -> tuple[Searcher, str, dict]:
        searcher = DenseSearcher(ws.docs, encoder=ws.dense_encoder(), doc_embeddings=ws.doc_embeddings())
        searcher = with_precision(searcher, ws.settings.search.encoder_precision)
        # the embeddings may come from the cache: their indexing time is the one measured when they were made
        seconds = json.loads((ws.out / "doc_embeddings.json").read_text())["seconds"]
        return searcher, f"Dense ({_dense_label(ws, 'all-MiniLM-L6-v2, bundled')})", {"index_seconds": seconds}

    def index(self, docs: list[Document], encoder=None, embeddings: np.ndarray | None = None) -> Searcher:
        return DenseSearcher(docs, encoder=encoder, doc_embeddings=embeddings)

    def save(self, searcher: Searcher, folder: Path, ws: Workspace) -> None:
        searcher.save(folder, model=ws.settings.dense.model)

    def load(self, folder: Path) -> Searcher:
        return DenseSearcher.load(folder)


# what fine-tuning the dense encoder reads (train_dense_encoder): the dense group, and of the training group the
# loop's settings that the dense group does not set (its learning rate is training.encoder_lr)
DENSE_TRAINING_KEYS = ("training.encoder_lr", "training.weight_decay", "training.precision",
                       "training.grad_accumulation", "training.grad_clip", "training.seed")


class DenseTrained(Dense):
    name = "dense-trained"
    description = "the dense encoder fine-tuned on the training queries (in-batch + BM25 negatives)"
    live = False
    trains = DENSE_TRAINING_KEYS

    def build(self, ws: Workspace) -> tuple[Searcher, str, dict]:
        return dense_trained(ws)

    def save(self, searcher: Searcher, folder: Path, ws: Workspace) -> None:
        searcher.save(folder, model=SAVED_ENCODER)  # the encoder trained here goes with its embeddings


def dense_trained(ws: Workspace) -> tuple[Searcher, str, dict]:
    """The dense encoder fine-tuned (all weights) on the training queries, with in-batch + BM25 negatives."""
    start = time.perf_counter()
    st, info = train_dense_encoder(ws, ws.out / "baselines" / "dense-trained" / "checkpoints")
    searcher = with_precision(DenseSearcher(ws.docs, encoder=st), ws.settings.search.encoder_precision)
    # training is reported apart, as for the generative methods; indexing is the corpus encoding
    index_seconds = time.perf_counter() - start - info["seconds"]
    return searcher, f"Dense, fine-tuned on the training queries ({_dense_label(ws, 'all-MiniLM-L6-v2')})", {
        "train_seconds": info["seconds"], "encoder": "full", "index_seconds": index_seconds}


def trained_doc_embeddings(ws: Workspace) -> np.ndarray:
    """Every document's embedding by the dense encoder fine-tuned on this run's training queries (as
    ``dense-trained`` trains it): docids built on relevance-trained embeddings (RIPOR's relevance-based
    initialisation), an option of the methods whose docids cluster or quantise dense embeddings. Kept in
    the run folder, keyed by what made them."""
    from genir.io import save_npy, write_json

    data = ws.settings.data
    key = {"dataset": ws.collection.content_hash, "dense": ws.settings.to_dict()["dense"],
           **{k: ws.settings.lookup(k)[0] for k in DENSE_TRAINING_KEYS},
           "train_split": data.train_split, "holdout": data.holdout, "new_docs": data.new_docs}
    path, meta = ws.out / "doc_embeddings_trained.npy", ws.out / "doc_embeddings_trained.json"
    if path.exists() and meta.exists() and json.loads(meta.read_text()).get("key") == json.loads(json.dumps(key)):
        return np.load(path)
    # checkpoints of a training cut short resume only under the same key (the loop checks its own group alone)
    made_with = ws.out / "dense_trained_encoder" / "key.json"
    if made_with.exists() and json.loads(made_with.read_text()) != json.loads(json.dumps(key)):
        checkpoint.discard(ws.out / "dense_trained_encoder")
    write_json(made_with, key)
    st, info = train_dense_encoder(ws, ws.out / "dense_trained_encoder" / "checkpoints")
    emb = st.encode([d.full_text for d in ws.docs], batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    save_npy(path, emb)
    write_json(meta, {"key": key, "train_seconds": info["seconds"]})
    checkpoint.discard(ws.out / "dense_trained_encoder")  # the embeddings are kept: the encoder resumes nothing now
    made_with.unlink(missing_ok=True)
    return emb


def refuse_trained_encoder(settings, action: str) -> None:
    """Docids built on the run's fine-tuned encoder (``docid_encoder=trained``) cannot place documents by the
    zero-shot one: the trained encoder is not kept beside the method's folder."""
    if getattr(settings, "docid_encoder", "zero-shot") == "trained":
        raise ValueError(f"docids built on the fine-tuned encoder (docid_encoder=trained) cannot {action}: the "
                         "fine-tuned encoder is not kept with the method's folder; train with the zero-shot "
                         "encoder's docids (docid_encoder=zero-shot) for that")


def train_dense_encoder(ws: Workspace, checkpoints: Path):
    """(sentence encoder, training info): the dense encoder fine-tuned (all weights) on the training queries,
    in-batch + BM25 negatives; it encodes up to 256 tokens afterwards, as the zero-shot one does."""
    if not ws.has_train_split:
        raise ValueError("a dense encoder trained on the training queries needs a training split")
    cfg = ws.settings.dense
    st = load_sentence_encoder(cfg.model)
    st.max_seq_length = cfg.train_max_length
    split = ws.settings.data.train_split
    index = {d: i for i, d in enumerate(ws.doc_ids)}
    qids = sorted(ws.collection.qrels[split])
    pairs = [(qi, index[d]) for qi, q in enumerate(qids) for d, g in ws.collection.qrels[split][q].items()
             if g > 0 and d in index and d not in ws.new_doc_ids]  # a judged id the corpus lacks: not trained on
    texts = [ws.collection.queries[q] for q in qids]
    ranked = ws.bm25().batch_search({str(i): t for i, t in enumerate(texts)}, cfg.negative_depth)
    positives = {qi: {d for q2, d in pairs if q2 == qi} for qi in range(len(qids))}
    negatives = {qi: [index[h.doc_id] for h in ranked[str(qi)] if index[h.doc_id] not in positives[qi]
                      and h.doc_id not in ws.new_doc_ids] for qi in range(len(qids))}
    docs = [d.full_text for d in ws.docs]
    tcfg = train_config(ws, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=ws.settings.training.encoder_lr,
                        warmup_ratio=0.1)
    trainer = Trainer(st, dense_contrastive_loss, ContrastiveDataset(pairs),
                      BiEncoderCollator(st, texts, docs, negatives, tcfg.seed), tcfg, checkpoints, desc="train dense")
    info = trainer.train()
    st.max_seq_length = 256
    return st, info


BASELINES: dict[str, Baseline] = {b.name: b for b in (Bm25(), Dense(), DenseTrained())}
