"""DSI (Tay et al.): a seq2seq retriever trained on fixed docids, atomic, naive (the id's characters) or
semantic (hierarchical k-means over dense document embeddings); indexing and retrieval examples mixed."""

from __future__ import annotations

from dataclasses import dataclass

from genir.docids import DocIdTable, atomic_docids, naive_docids, semantic_docids
from genir.docids.schemes import semantic_place
from genir.methods.base import AddedDocids, Method, NewDocuments
from genir.settings import at_least
from genir.workspace import Workspace


@dataclass
class DsiSettings:
    semantic_c: int = at_least(32, 2)  # semantic docids: children per node and leaf size


def semantic(ws: Workspace, cfg: DsiSettings, folder) -> DocIdTable:
    return semantic_docids(ws.doc_ids, ws.doc_embeddings(), c=cfg.semantic_c, seed=ws.settings.training.seed)


def semantic_index_corpus(ws: Workspace, cfg: DsiSettings, model, folder) -> DocIdTable:
    """DSI-semantic: the new corpus clustered by the same recipe (hierarchical k-means of its dense
    embeddings, same c); the trained decoder's codes keep no meaning across corpora, which is what the
    static-docid rows of GLEN's Table 4 measure."""
    return semantic_docids(ws.doc_ids, ws.doc_embeddings(), c=model.config.n_codes, seed=ws.settings.training.seed)


def semantic_add(new: NewDocuments) -> AddedDocids:
    """New documents placed in the trained k-means tree by their dense embeddings (no re-clustering)."""
    codes, _ = semantic_place(new.table, new.table_embeddings(), new.embeddings)
    return AddedDocids(codes)


_RETRAIN = ("retrain with the new documents in the corpus (genir run --redo {name}), or use a method that indexes "
            "a document without retraining (tied-atomic, genret, glen, dsi-semantic, merge)")
_ATOMIC_REFUSAL = ("atomic docids are output units of the trained decoder: a new document has no output the model "
                   "was trained to generate; " + _RETRAIN.format(name="dsi-atomic"))
_NAIVE_REFUSAL = ("a naive docid is the document id's characters, which the decoder only learns to spell by "
                  "training on that document; " + _RETRAIN.format(name="dsi-naive"))

_OBJECTIVE = "seq2seq cross-entropy to the docid (indexing + retrieval examples)"
_SEARCH = "constrained beam search over the docid prefix tree"

METHODS = [
    Method("dsi-atomic", "DSI, atomic docids: one output per document, one decoding step",
           "atomic (one code per document)", _OBJECTIVE, _SEARCH, group="dsi",
           make_docids=lambda ws, cfg, folder: atomic_docids(ws.doc_ids), live_refusal=_ATOMIC_REFUSAL),
    Method("dsi-naive", "DSI, naive string docids: the document id's characters",
           "naive (the document id's characters)", _OBJECTIVE, _SEARCH, group="dsi",
           make_docids=lambda ws, cfg, folder: naive_docids(ws.doc_ids), live_refusal=_NAIVE_REFUSAL),
    Method("dsi-semantic", "DSI, semantic docids: hierarchical k-means over dense document embeddings",
           "semantic (hierarchical k-means, c children per node)", _OBJECTIVE, _SEARCH, group="dsi",
           make_docids=semantic, index_corpus=semantic_index_corpus, add_docids=semantic_add),
]
GROUPS = {"dsi": DsiSettings}
