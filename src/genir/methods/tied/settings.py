"""Tied-Atomic's settings group (``--set tied.KEY=VALUE``)."""

from __future__ import annotations

from dataclasses import dataclass

from genir.settings import added, at_least, choice, flag, positive


@dataclass
class TiedSettings:
    mode: str = choice("generative", "generative", "dense", search=True, flag_name="tied-mode", flag=(
        "tied-atomic search: docid vectors as the output layer (generative) or faiss (dense)"))
    negatives: int = 3  # BM25 negatives per query (plus in-batch negatives)
    negative_depth: int = at_least(30, 1)  # negatives are sampled from BM25's top-k
    # tied-atomic-distill: TSV query_id, doc_id, score (or a TREC run) for training queries; or "dense+bm25",
    # genir's own teacher (genir.search.teacher: the dense encoder's cosine + teacher_bm25 x normalised BM25),
    # which scores every training text, pseudo-queries too (GPL's recipe with this teacher)
    teacher_scores: str | None = flag(None, "tied-atomic-distill: teacher scores, TSV query_id<TAB>doc_id<TAB>score "
                                      "or a TREC run; or dense+bm25 (genir's own teacher)", reads=True)
    teacher_bm25: float = added(0.3, ge=0)  # "dense+bm25": BM25's share (alpha; bench/hybrid_teacher.py)
    teacher_depth: int = added(50, ge=2)  # "dense+bm25": candidates per text from each ranking
    # the text vector as the encoder's sentence embedding + a learned residual of the decoder state (0 at
    # the start): before training the model ranks as its encoder does as a dense retriever
    residual: bool = False
    # with residual: weight of the mean squared residual |h - sentence|^2 added to the loss, pulling the text
    # vectors towards the encoder's own embedding (0: unregularised); the function-space form of L2-SP
    # (Li et al., 2018), so training adds to the encoder's ranking instead of replacing it
    residual_weight: float = added(0.0, ge=0)
    # with residual, when searching: the learned residual times this scale (queries and documents alike), i.e.
    # the residual's projection interpolated between its start (0: the encoder's dense ranking) and its trained
    # weights (1): WiSE-FT (Wortsman et al., 2022), which trades in-distribution gains for robustness
    residual_scale: float = added(1.0, ge=0, search=True)
    # with residual: false keeps every query at the encoder's sentence embedding, so only documents learn a
    # residual (their vectors move towards the queries that judge them; an unseen query meets the encoder
    # it was pretrained for). bench/residual_parts.py measures the two sides apart
    query_residual: bool = added(True)
    temperature: float = positive(1.0)  # scores / temperature in the contrastive loss (1: raw dot products)
