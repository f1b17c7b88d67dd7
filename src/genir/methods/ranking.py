"""Rank-aware training as a recipe part any method with a seq2seq retriever over fixed docids can take
(DSI, MERGE's retriever, GenRet's fit stage): the ``rank`` settings group, genir's dense+BM25 teacher over
every training text, batches that carry each text's teacher-scored candidates, and the objective that adds
the prefix Margin-MSE of :mod:`genir.training.ranking` to the method's own generation loss.

A method turns it on with a ``rank_weight`` in its own settings group (the loss's weight, 0: off), so that
each method keeps its own held-out choice; the teacher and the loss's form are the shared ``rank`` group."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

from genir.distributed import is_main
from genir.docids import PrefixTree
from genir.models.pooling import mean_pooled
from genir.settings import at_least, choice, positive
from genir.training.objectives import memory_of
from genir.training.ranking import allowed_along, level_weights, prefix_margin_mse, prefix_scores
from genir.workspace import Workspace


@dataclass
class RankSettings:
    """The rank-aware loss's teacher and form (``--set rank.KEY=VALUE``); its weight is each method's own
    ``rank_weight`` (``dsi.rank_weight``, ``merge.rank_weight``, ``genret.rank_weight``)."""

    negatives: int = at_least(3, 1)  # teacher-scored negatives per training text and step
    # the teacher: the dense encoder's cosine + teacher_bm25 x BM25 / its best (genir.search.teacher), over
    # each text's top `depth` by either and by their sum, the text's positives always among them
    teacher_bm25: float = 0.3
    depth: int = at_least(50, 2)
    # teacher margins x scale: the teacher's are differences of cosines (~0.1), the model's of summed
    # log-probabilities (nats)
    scale: float = positive(10.0)
    levels: str = choice("uniform", "uniform", "increasing", "last")  # w_l over the prefix lengths
    # prefix scores as log-softmax over the codes the prefix tree allows (true) or over every output, as the
    # beam search scores (false)
    constrained: bool = False


def training_texts(examples) -> dict[int, set[int]]:
    """Text index -> its positive documents, over the texts that stand for a query: training queries and
    pseudo-queries, not a document's own leading text (which its own document trivially tops)."""
    out: dict[int, set[int]] = {}
    for t, d, kind in examples.examples:
        if kind == "retrieval" or t != examples.doc_text.get(d):
            out.setdefault(t, set()).add(d)
    return out


def text_embeddings(ws: Workspace, model, texts: list[str], cached: list[int | None]) -> np.ndarray:
    """The dense encoder's unit-length embeddings of training texts, as the teacher's query side. Where the
    model's frozen backbone is that encoder (the bundled MiniLM, or the same name), a text cached for
    training (``cached[i]``: its index into the workspace's texts) is mean-pooled from its cached states,
    sentence-transformers' own pooling over the tokens the student reads, instead of encoded again."""
    m, dense_model = ws.settings.model, ws.settings.dense.model
    same = ws.frozen_encoder and (m.backbone == dense_model or (m.backbone == "minilm" and dense_model is None))
    hit = [i for i, c in enumerate(cached) if c is not None] if same else []
    rest = sorted(set(range(len(texts))) - set(hit))
    out = None
    if rest:
        encoded = ws.dense_encoder().encode([texts[i] for i in rest], batch_size=64, normalize_embeddings=True,
                                            convert_to_numpy=True, show_progress_bar=is_main())
        out = np.zeros((len(texts), encoded.shape[1]), dtype=np.float32)
        out[rest] = encoded
    store = ws.encoded(model) if hit else None
    for s in range(0, len(hit), 256):
        rows = hit[s:s + 256]
        memory, mask = store.batch([cached[i] for i in rows])
        pooled = mean_pooled(memory, mask)
        if out is None:
            out = np.zeros((len(texts), pooled.shape[1]), dtype=np.float32)
        out[rows] = pooled.numpy()
    return out if out is not None else np.zeros((0, 1), dtype=np.float32)


def teacher_candidates(ws: Workspace, rank: RankSettings, examples, model) -> dict[int, dict[int, float]]:
    """Text index -> {document index: T(text, d)} over each training text's candidates (trained documents
    only: held-out ones stay unseen), by the dense encoder's cosine + ``rank.teacher_bm25`` x BM25: the
    documents read whole (the dense baseline's embeddings), the texts as the student reads them.
    ``examples``: the :class:`~genir.training.data.IndexingExamples` the method trains on."""
    from genir.search.teacher import dense_bm25_scores

    positives = training_texts(examples)
    text_ids = sorted(positives)
    texts = [examples.texts[t] for t in text_ids]
    base = ws.examples().texts  # the texts the workspace caches (MERGE's <retrieval> queries are not among them)
    cached = [t if t < len(base) and base[t] == examples.texts[t] else None for t in text_ids]
    emb = text_embeddings(ws, model, texts, cached)
    rows = dense_bm25_scores(ws.bm25(), emb, ws.doc_embeddings(), texts,
                             rank.teacher_bm25, rank.depth, keep=[positives[t] for t in text_ids],
                             show_progress=is_main())
    return {t: {d: s for d, s in row.items() if d in examples.doc_text} for t, row in zip(text_ids, rows, strict=True)}


class RankCollator:
    """A method's batches plus, per example (text, positive): ``rank_targets`` (B, 1 + negatives, L) the code
    sequences of the positive and of negatives drawn from the text's teacher candidates (other positives
    left out), ``rank_teacher`` their teacher scores and ``rank_valid`` which exist. A text without teacher
    scores (a document's own text) has no valid candidate and adds no rank term."""

    def __init__(self, collate, targets: list[tuple[int, ...]], teacher: dict[int, dict[int, float]],
                 positives: dict[int, set[int]], negatives: int, seed: int = 0):
        self.collate, self.targets, self.teacher, self.positives = collate, targets, teacher, positives
        self.negatives, self.rng = negatives, random.Random(seed)
        self.width = max(len(s) for s in targets)  # the longest docid: once, not per batch

    def __call__(self, items: list[tuple[int, int]]) -> dict[str, torch.Tensor]:
        batch = self.collate(items)
        width = self.width
        codes = torch.full((len(items), 1 + self.negatives, width), -100, dtype=torch.long)
        teacher = torch.zeros(len(items), 1 + self.negatives)
        valid = torch.zeros(len(items), 1 + self.negatives, dtype=torch.bool)
        for i, (text, doc) in enumerate(items):
            scores = self.teacher.get(text)
            if not scores or doc not in scores:
                continue
            pool = [d for d in scores if d not in self.positives[text]]
            chosen = self.rng.sample(pool, min(self.negatives, len(pool)))
            for j, d in enumerate([doc, *chosen]):
                codes[i, j, : len(self.targets[d])] = torch.tensor(self.targets[d])
                teacher[i, j], valid[i, j] = scores[d], True
        return {**batch, "rank_targets": codes, "rank_teacher": teacher, "rank_valid": valid}


class RankAwareObjective:
    """``objective`` (the method's generation loss) + ``weight`` x the prefix Margin-MSE over the batch's
    ``rank_*`` candidates; the encoder states are computed once and shared by the two."""

    def __init__(self, objective, trie: PrefixTree, weight: float, rank: RankSettings):
        self.objective, self.trie, self.weight, self.rank = objective, trie, weight, rank
        self.weights = level_weights(trie.depth, rank.levels)

    def __call__(self, model, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        memory, mask = memory_of(model, batch)
        loss, logs = self.objective(model, {**batch, "memory": memory, "mask": mask})
        rows = torch.nonzero(batch["rank_valid"][:, 0] & batch["rank_valid"][:, 1:].any(1)).squeeze(1)
        if not len(rows):
            return loss, {**logs, "rank": 0.0}
        codes = batch["rank_targets"][rows]
        n, c, width = codes.shape
        flat = codes.reshape(n * c, width)
        logits = model(memory[rows].repeat_interleave(c, 0), mask[rows].repeat_interleave(c, 0), flat)
        allowed = allowed_along(self.trie, flat) if self.rank.constrained else None
        scores = prefix_scores(logits, flat, allowed).reshape(n, c, width)  # width: the tree's depth
        rank = prefix_margin_mse(scores, batch["rank_teacher"][rows], batch["rank_valid"][rows],
                                 self.weights.to(scores.device), self.rank.scale)
        return loss + self.weight * rank, {**logs, "rank": float(rank.detach())}


def rank_aware(ws: Workspace, weight: float, data: tuple, objective, trie: PrefixTree, model) -> tuple[tuple, object]:
    """(data, objective) with the rank-aware loss added at ``weight`` (unchanged at 0). ``data`` is a
    (dataset of (text, document) items, collate) pair, as the shared training loop takes."""
    if not weight:
        return data, objective
    rank: RankSettings = ws.settings.group("rank")
    dataset, collate = data
    examples = dataset.examples  # the texts the method trains on (MERGE's carry its <retrieval> token)
    targets = [trie.full_sequence(i) for i in range(len(trie.table))]
    collate = RankCollator(collate, targets, teacher_candidates(ws, rank, examples, model), training_texts(examples),
                           rank.negatives, ws.settings.training.seed)
    return (dataset, collate), RankAwareObjective(objective, trie, weight, rank)
