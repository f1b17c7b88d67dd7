"""DSI (Tay et al.): a seq2seq retriever trained on fixed docids, atomic, naive (the id's characters) or
semantic (hierarchical k-means over dense document embeddings); indexing and retrieval examples mixed."""

from __future__ import annotations

from pathlib import Path

from genir.docids import DocIdTable, atomic_docids, naive_docids, semantic_docids
from genir.docids.schemes import semantic_place, semantic_reindex
from genir.methods.base import AddedDocids, Method, NewDocuments, TransferSource, refuse_unread
from genir.methods.baselines import refuse_trained_encoder, trained_doc_embeddings
from genir.methods.dsi.settings import DsiSettings
from genir.workspace import Workspace

_RETRAIN = ("retrain with the new documents in the corpus (genir run --redo {name}), or use a method that indexes "
            "a document without retraining (tied-atomic, genret, glen, dsi-semantic, merge)")
_ATOMIC_REFUSAL = ("atomic docids are output units of the trained decoder: a new document has no output the model "
                   "was trained to generate; " + _RETRAIN.format(name="dsi-atomic"))
_NAIVE_REFUSAL = ("a naive docid is the document id's characters, which the decoder only learns to spell by "
                  "training on that document; " + _RETRAIN.format(name="dsi-naive"))

_OBJECTIVE = "seq2seq cross-entropy to the docid (indexing + retrieval examples)"
_SEARCH = "constrained beam search over the docid prefix tree"

def check_settings(ws: Workspace, settings: DsiSettings) -> None:
    """dsi.semantic_c shapes semantic docids alone: refused beside atomic or naive ones without dsi-semantic."""
    if "dsi-semantic" not in ws.settings.methods:
        refuse_unread(ws, "dsi", settings, {"semantic_c": "shapes semantic docids; this run trains no dsi-semantic"})


class DsiAtomic(Method):
    name = "dsi-atomic"
    description = "DSI, atomic docids: one output per document, one decoding step"
    docids = "atomic (one code per document)"
    objective_text, search_mode, group = _OBJECTIVE, _SEARCH, "dsi"
    live_refusal = _ATOMIC_REFUSAL
    # every query-free text: 0.636 -> 0.777 nDCG@10 on SciFact's held-out training queries (docs/experiments/
    # effectiveness.md, "Indexing texts chosen on held-out queries")
    indexing_texts = "all"

    check = staticmethod(check_settings)

    def make_docids(self, ws: Workspace, settings: DsiSettings, folder: Path) -> DocIdTable:
        return atomic_docids(ws.doc_ids)


class DsiNaive(Method):
    name = "dsi-naive"
    description = "DSI, naive string docids: the document id's characters"
    docids = "naive (the document id's characters)"
    objective_text, search_mode, group = _OBJECTIVE, _SEARCH, "dsi"
    live_refusal = _NAIVE_REFUSAL
    # every query-free text: 0.343 -> 0.539 nDCG@10 on SciFact's held-out training queries, unseen 0.029 -> 0.284
    # (effectiveness.md, "DSI-naive's texts")
    indexing_texts = "all"

    check = staticmethod(check_settings)

    def make_docids(self, ws: Workspace, settings: DsiSettings, folder: Path) -> DocIdTable:
        return naive_docids(ws.doc_ids)


class DsiSemantic(Method):
    name = "dsi-semantic"
    description = "DSI, semantic docids: hierarchical k-means over dense document embeddings"
    docids = "semantic (hierarchical k-means, c children per node)"
    objective_text, search_mode, group = _OBJECTIVE, _SEARCH, "dsi"
    # every query-free text: 0.441 -> 0.578 nDCG@10 held-out (effectiveness.md, "The same texts for DSI-semantic")
    indexing_texts = "all"

    def make_docids(self, ws: Workspace, settings: DsiSettings, folder: Path) -> DocIdTable:
        embeddings = trained_doc_embeddings(ws) if settings.docid_encoder == "trained" else ws.doc_embeddings()
        return semantic_docids(ws.doc_ids, embeddings, c=settings.semantic_c, seed=ws.settings.training.seed)

    def transfer_reads(self, source: Path) -> list[Path]:
        """The model, and the trained tree: its docids and the dense embeddings it was clustered from."""
        return [*super().transfer_reads(source), source / self.name / "docids", source / "doc_embeddings.npy"]

    def index_corpus(self, ws: Workspace, settings: DsiSettings, model, folder: Path,
                     source: TransferSource) -> DocIdTable:
        """The new corpus placed in the trained k-means tree by its dense embeddings, as the live index places
        a new document, so a code means what the decoder learned it to mean; a full leaf sends a document to
        the nearest leaf with room (``semantic_reindex``). On CISI from SciFact it gave nDCG@10 0.047 where
        re-clustering the new corpus gave 0.043 (BM25 0.372): the leaf positions carry no meaning either way."""
        refuse_trained_encoder(settings, "index another corpus")
        trained = DocIdTable.load(source.folder / self.name / "docids")
        src = source.workspace()
        row = {d: i for i, d in enumerate(src.doc_ids)}
        embeddings = src.doc_embeddings()[[row[d] for d in trained.doc_ids]]
        codes, moved = semantic_reindex(trained, embeddings, ws.doc_embeddings())
        return DocIdTable(ws.doc_ids, codes, trained.vocab_size, "semantic",
                          {**trained.meta, "placed_in": str(source.folder), "sent_to_another_leaf": moved})

    def add_docids(self, new: NewDocuments) -> AddedDocids:
        """New documents placed in the trained k-means tree by their dense embeddings (no re-clustering)."""
        refuse_trained_encoder(new.settings, "place a new document")
        codes, _ = semantic_place(new.table, new.table_embeddings(), new.embeddings)
        return AddedDocids(codes)


METHODS = [DsiAtomic(), DsiNaive(), DsiSemantic()]
GROUPS = {"dsi": DsiSettings}
