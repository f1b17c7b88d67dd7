"""Generative methods as recipes over shared parts: a docid scheme, a training objective, a search mode.

``genir run --method NAME`` reads this registry. A new method adds a docid scheme and an objective here;
the data loading, training loop, trie, beam search and metrics are shared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from genir.docids import DocIdTable, atomic_docids, naive_docids, semantic_docids
from genir.training.objectives import seq2seq_loss


@dataclass
class MethodContext:
    """What a docid scheme may draw on: document ids in corpus order and (lazily) dense embeddings."""

    doc_ids: list[str]
    embed_docs: Callable[[], np.ndarray]
    options: dict


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    make_docids: Callable[[MethodContext], DocIdTable]
    objective: Callable = seq2seq_loss


METHODS: dict[str, Method] = {
    m.name: m for m in [
        Method("dsi-atomic", "DSI, atomic docids: one output per document, one decoding step",
               lambda ctx: atomic_docids(ctx.doc_ids)),
        Method("dsi-naive", "DSI, naive string docids: the document id's characters",
               lambda ctx: naive_docids(ctx.doc_ids)),
        Method("dsi-semantic", "DSI, semantic docids: hierarchical k-means over dense document embeddings",
               lambda ctx: semantic_docids(ctx.doc_ids, ctx.embed_docs(), c=ctx.options.get("semantic_c", 32),
                                           seed=ctx.options.get("seed", 0))),
    ]
}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    return METHODS[name]
