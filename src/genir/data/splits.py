"""Seen / unseen test queries, and held-out slices of training queries for model selection."""

from __future__ import annotations

import random

from genir.data.collection import Qrels


def relevant(qrels: Qrels) -> dict[str, set[str]]:
    return {q: {d for d, g in r.items() if g > 0} for q, r in qrels.items()}


def seen_unseen(train: Qrels, test: Qrels) -> tuple[set[str], set[str]]:
    """A test query is seen when one of its relevant documents is relevant to some training query."""
    train_docs = {d for docs in relevant(train).values() for d in docs}
    seen, unseen = set(), set()
    for q, docs in relevant(test).items():
        if not docs:
            continue
        (seen if docs & train_docs else unseen).add(q)
    return seen, unseen


def hold_out(qrels: Qrels, fraction: float, seed: int = 0) -> tuple[Qrels, Qrels]:
    """Split training qrels by query into (train, held-out) for choosing hyper-parameters."""
    qids = sorted(qrels)
    random.Random(seed).shuffle(qids)
    n = int(round(len(qids) * fraction))
    held = set(qids[:n])
    return ({q: r for q, r in qrels.items() if q not in held}, {q: r for q, r in qrels.items() if q in held})
