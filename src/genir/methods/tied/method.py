"""Tied-Atomic (Nguyen and Yates, "Generative Retrieval as Dense Retrieval"): atomic docids whose output
vectors are the model's own encodings of the documents (Eq. 2), trained contrastively with BM25 negatives,
or by Margin-MSE from teacher scores; searched generatively (one constrained step) or with faiss."""

from __future__ import annotations

from pathlib import Path

from genir.distributed import is_main
from genir.docids import DocIdTable, PrefixTree, atomic_docids
from genir.methods.base import (
    AddedDocids,
    Method,
    NewDocuments,
    SearchRequest,
    Trained,
    TransferSource,
    refuse_unread,
)
from genir.methods.tied.model import TiedSeq2Seq
from genir.methods.tied.objective import tied_contrastive_loss, tied_margin_mse_loss
from genir.methods.tied.search import TiedAtomicIndex, TiedAtomicSearcher
from genir.methods.tied.settings import TiedSettings
from genir.training.data import (
    ContrastiveCollator,
    ContrastiveDataset,
    MarginCollator,
    read_teacher_scores,
)
from genir.workspace import Workspace


def contrastive_data(ws: Workspace, cfg: TiedSettings, model, table: DocIdTable, trie: PrefixTree):
    """(query, positive document) pairs from training queries and pseudo-queries, with BM25 top-k negatives
    (Tied-Atomic Sec. 4: "contrastive loss with BM25 negatives sampled from top-k").

    With ``--encoder full`` every query and document of a batch goes through the encoder being trained, so
    the loss always sees the current document encodings; the whole corpus is re-encoded once, by the final
    model, when the searcher opens (the tied output layer; its cost is the report's ``index_seconds``).
    Training never needs the whole matrix: its negatives are BM25's, fixed before training."""
    examples = ws.examples()
    pairs = training_pairs(examples)
    query_texts = sorted({t for t, _ in pairs})
    ranked = ws.bm25().batch_search({str(t): examples.texts[t] for t in query_texts}, cfg.negative_depth)
    index = {d: i for i, d in enumerate(table.doc_ids)}
    negatives = {t: [index[h.doc_id] for h in ranked[str(t)]] for t in query_texts}
    positives: dict[int, set[int]] = {}
    for t, d in pairs:
        positives.setdefault(t, set()).add(d)
    # negatives only among trained documents: held-out ("new") documents stay unseen in training
    negatives = {t: [d for d in negs if d not in positives[t] and d in examples.doc_text]
                 for t, negs in negatives.items()}
    collate = ContrastiveCollator(ws.text_inputs(model), examples.doc_text, negatives, sorted(examples.doc_text),
                                  cfg.negatives, ws.settings.training.seed)
    return ContrastiveDataset(pairs), collate


BUILTIN_TEACHER = "dense+bm25"


def training_pairs(examples) -> list[tuple[int, int]]:
    """(text, positive document): training queries and pseudo-queries (not a document's own leading text)."""
    return [(t, d) for t, d, kind in examples.examples
            if kind == "retrieval" or (kind == "indexing" and t != examples.doc_text.get(d))]


def require_teacher(cfg: TiedSettings) -> None:
    if not cfg.teacher_scores:
        raise ValueError(f"tied-atomic-distill needs --teacher-scores FILE (query_id, doc_id, score) "
                         f"or --teacher-scores {BUILTIN_TEACHER}")


def distillation_data(ws: Workspace, cfg: TiedSettings, model, table: DocIdTable, trie: PrefixTree):
    """Margin-MSE data. From a file (``tied.teacher_scores``: TSV query_id, doc_id, score, or a TREC run):
    training queries whose positive and at least one other document carry teacher scores. From genir's own
    teacher (``dense+bm25``): every training text, scored over its candidates as it is made."""
    require_teacher(cfg)
    if cfg.teacher_scores == BUILTIN_TEACHER:
        return builtin_distillation_data(ws, cfg, model)
    coll = ws.collection
    teacher = read_teacher_scores(cfg.teacher_scores, coll.queries, coll.corpus)
    examples = ws.examples()
    index = {d: i for i, d in enumerate(table.doc_ids)}
    text_id = {t: i for i, t in enumerate(examples.texts)}
    text_of = {q: text_id[coll.queries[q]] for q in teacher if coll.queries[q] in text_id}
    by_text = {text_of[q]: {index[d]: s for d, s in scores.items() if index[d] in examples.doc_text}
               for q, scores in teacher.items() if q in text_of}
    pairs = [(t, d) for t, d, kind in examples.examples
             if kind == "retrieval" and d in by_text.get(t, {}) and len(by_text[t]) > 1]
    if not pairs:
        raise ValueError("no training query has teacher scores for its positive and another document")
    return (ContrastiveDataset(pairs),
            MarginCollator(ws.text_inputs(model), examples.doc_text, by_text, ws.settings.training.seed))


def builtin_distillation_data(ws: Workspace, cfg: TiedSettings, model):
    """Every training pair of the contrastive recipe (queries and pseudo-queries), its text scored by the
    dense+BM25 teacher over its candidates and its positive; held-out ("new") documents stay out. The teacher
    reads each document as training does: the cosine with its leading span, BM25 over its whole text."""
    from genir.search.teacher import dense_bm25_scores

    examples = ws.examples()
    pairs = training_pairs(examples)  # only trained documents: new ones have no examples
    text_ids = sorted({t for t, _ in pairs})
    positives: dict[int, set[int]] = {}
    for t, d in pairs:
        positives.setdefault(t, set()).add(d)
    # the teacher's cosine is the student's own starting score: the encoder's embedding of the document as
    # training feeds it (its leading span; search encodes the whole document), so that the residual learns
    # BM25's share alone and not the gap between a span and its document
    texts, lead = [examples.texts[t] for t in text_ids], ws.lead_texts(ws.docs)
    embed = teacher_embeddings(ws, model)
    scores = dense_bm25_scores(ws.bm25(), embed(texts, text_ids),
                               embed(lead, [examples.doc_text.get(d) for d in range(len(lead))]), texts,
                               cfg.teacher_bm25, cfg.teacher_depth, keep=[positives[t] for t in text_ids],
                               show_progress=is_main())
    by_text = {t: {d: s for d, s in row.items() if d in examples.doc_text}
               for t, row in zip(text_ids, scores, strict=True)}
    return (ContrastiveDataset(pairs),
            MarginCollator(ws.text_inputs(model), examples.doc_text, by_text, ws.settings.training.seed))


def teacher_embeddings(ws: Workspace, model):
    """``embed(texts, cached)``: the dense encoder's unit-length embeddings of ``texts``. Where the model's
    frozen backbone is that encoder and its cache reads as many tokens, a text whose index into the training
    texts is in ``cached`` is mean-pooled from the cache (the encoder's own pooling over the same states; the
    cache keeps them in float16), so the encoder does not read it twice; the others are encoded."""
    import numpy as np
    import torch

    encoder, m = ws.dense_encoder(), ws.settings.model
    same = ws.frozen_encoder and m.doc_max_length == encoder.max_seq_length and (
        m.backbone == ws.settings.dense.model or (m.backbone == "minilm" and ws.settings.dense.model is None))
    inputs = ws.text_inputs(model) if same else None

    def embed(texts: list[str], cached: list[int | None]) -> np.ndarray:
        hit = [i for i, c in enumerate(cached) if c is not None] if inputs is not None else []
        rest = sorted(set(range(len(texts))) - set(hit))
        encoded = encoder.encode([texts[i] for i in rest], batch_size=64, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=is_main()) if rest else None
        out = np.zeros((len(texts), model.d_model if encoded is None else encoded.shape[1]), dtype=np.float32)
        if encoded is not None:
            out[rest] = encoded
        for s in range(0, len(hit), 256):
            rows = hit[s:s + 256]
            memory, mask = inputs.encoded.batch([cached[i] for i in rows])
            with torch.no_grad():
                out[rows] = model.sentence_vector(memory, mask).numpy()
        return out

    return embed


def check_settings(ws: Workspace | None, cfg: TiedSettings) -> None:
    """Before any stage runs (and again when a model is built): settings that only make sense together."""
    if cfg.residual_weight and not cfg.residual:
        raise ValueError("tied.residual_weight regularises the residual form: set tied.residual=true with it")
    if not cfg.query_residual and not cfg.residual:
        raise ValueError("tied.query_residual=false leaves queries without the residual form's residual: "
                         "set tied.residual=true with it")
    if cfg.residual_scale != 1 and not cfg.residual:
        raise ValueError("tied.residual_scale scales the residual form's residual: set tied.residual=true with it")
    if ws is None:
        return
    # what only one of the two trainings reads: the teacher (distillation), BM25 negatives (contrastive)
    methods, unread = ws.settings.methods, {}
    if "tied-atomic-distill" not in methods:
        unread.update(dict.fromkeys(("teacher_scores", "teacher_bm25", "teacher_depth"),
                                    "read by tied-atomic-distill, which this run does not train"))
    elif cfg.teacher_scores != BUILTIN_TEACHER:
        unread.update(dict.fromkeys(("teacher_bm25", "teacher_depth"), f"read by genir's own teacher "
                                    f"(--teacher-scores {BUILTIN_TEACHER}), not by a teacher file"))
    if "tied-atomic" not in methods:
        unread.update(dict.fromkeys(("negatives", "negative_depth"), "read by tied-atomic's contrastive training "
                                    "(BM25 negatives); tied-atomic-distill learns the teacher's margins"))
    refuse_unread(ws, "tied", cfg, unread)


def check_distillation(ws: Workspace, cfg: TiedSettings) -> None:
    """Before any stage runs: the teacher scores are given and read (file and line on a bad one)."""
    check_settings(ws, cfg)
    require_teacher(cfg)
    if cfg.teacher_scores != BUILTIN_TEACHER:
        read_teacher_scores(cfg.teacher_scores, ws.collection.queries, ws.collection.corpus)


def open_searcher(req: SearchRequest) -> TiedAtomicSearcher:
    """Encode every document into the tied docid matrix; search it generatively or with faiss."""
    if req.docs is None:
        raise ValueError(f"{req.folder}: tied docids are encodings of the corpus; give the dataset to encode it")
    searcher = TiedAtomicSearcher(req.model, TiedAtomicIndex(req.model.tied_dim), mode=req.settings.mode,
                                  residual_scale=req.settings.residual_scale, name=req.name,
                                  show_progress=req.show_progress and is_main())
    searcher.add_documents(req.docs)
    return searcher


def report(ws: Workspace, cfg: TiedSettings, trained: Trained, searcher: TiedAtomicSearcher) -> dict:
    """Generative and dense inference must agree: both run on the test queries."""
    return {"mode_agreement": searcher.compare_modes(ws.test_queries, ws.settings.search.k)}


def render(result: dict) -> list[str]:
    a = result.get("mode_agreement")
    if not a:
        return []
    return [f"{result['name']}: generative decoding and faiss search gave the same ranking on "
            f"{a['same_ranking']} of {a['queries']} queries (ties aside); largest score difference "
            f"{a['max_score_difference']:.2e}.", ""]


def add_docids(new: NewDocuments) -> AddedDocids:
    """A tied docid is the document's own encoding: the searcher encodes the document when it opens (or at
    once, in a live service); the table only gains an atomic code."""
    first = int(new.table.codes.max()) + 1 if len(new.table) else 0
    return AddedDocids([[first + i] for i in range(len(new.docs))], vocab_size=first + len(new.docs))


def model_extra(cfg: TiedSettings) -> dict:
    check_settings(None, cfg)
    return {"tied_residual": cfg.residual, "tied_temperature": cfg.temperature,
            "tied_residual_weight": cfg.residual_weight, "tied_query_residual": cfg.query_residual}


_DOCIDS = "atomic, tied to the model's own document encodings (Eq. 2)"
_SEARCH = "one constrained decoding step over the tied vectors (tied.mode=generative) or faiss (dense)"

class TiedAtomic(Method):
    name = "tied-atomic"
    description = "Tied-Atomic: atomic docids tied to the model's own document encodings"
    docids, search_mode, group = _DOCIDS, _SEARCH, "tied"
    objective_text = "contrastive: in-batch + BM25 top-k negatives"
    objective = staticmethod(tied_contrastive_loss)
    model_class = TiedSeq2Seq
    needs_corpus = True
    decodes = False  # one step of dot products with the document encodings, or faiss

    budgets = "contrastive training: training.epochs, training.batch_size, training.lr"

    def make_docids(self, ws: Workspace, settings: TiedSettings, folder: Path) -> DocIdTable:
        return atomic_docids(ws.doc_ids)

    def phases(self, ws: Workspace):
        from genir.methods.base import retriever_phase

        # a teacher file keeps only the pairs it scores: the count is a bound until it is read
        bound = self.name != "tied-atomic" and ws.settings.tied.teacher_scores != BUILTIN_TEACHER
        phase = retriever_phase(ws, "contrastive" if self.name == "tied-atomic" else "Margin-MSE",
                                len(training_pairs(ws.examples())))
        phase.at_most = bound
        return [phase]

    def training_data(self, ws: Workspace, settings: TiedSettings, model, table: DocIdTable, trie: PrefixTree):
        return contrastive_data(ws, settings, model, table, trie)

    def n_codes(self, table: DocIdTable) -> int:
        return 1  # the output layer is the document encodings, not trained codes

    def index_corpus(self, ws: Workspace, settings: TiedSettings, model, folder: Path,
                     source: TransferSource) -> DocIdTable:
        """Zero-shot: a tied docid is the trained model's encoding of the document (Eq. 2), so another
        corpus is indexed by encoding it; the searcher does that when it opens with the corpus."""
        return atomic_docids(ws.doc_ids)

    model_extra = staticmethod(model_extra)

    def check(self, ws: Workspace, settings: TiedSettings) -> None:
        check_settings(ws, settings)

    open_searcher = staticmethod(open_searcher)
    add_docids = staticmethod(add_docids)
    report = staticmethod(report)
    render = staticmethod(render)


class TiedAtomicDistill(TiedAtomic):
    name = "tied-atomic-distill"
    description = "Tied-Atomic trained by Margin-MSE on teacher scores (--teacher-scores)"
    objective_text = "Margin-MSE on teacher score margins"
    objective = staticmethod(tied_margin_mse_loss)

    def training_data(self, ws: Workspace, settings: TiedSettings, model, table: DocIdTable, trie: PrefixTree):
        return distillation_data(ws, settings, model, table, trie)

    def check(self, ws: Workspace, settings: TiedSettings) -> None:
        check_distillation(ws, settings)


METHODS = [TiedAtomic(), TiedAtomicDistill()]
GROUPS = {"tied": TiedSettings}
