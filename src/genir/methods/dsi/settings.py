"""DSI's settings group (``--set dsi.KEY=VALUE``)."""

from __future__ import annotations

from dataclasses import dataclass

from genir.settings import added, at_least, choice


@dataclass
class DsiSettings:
    # the dense embeddings semantic docids cluster: the zero-shot encoder's (dense.model) or the same encoder
    # fine-tuned on the training queries, as dense-trained trains it (RIPOR's relevance-based docids)
    docid_encoder: str = choice("zero-shot", "zero-shot", "trained", added=True)
    semantic_c: int = at_least(32, 2, flag="children per node / leaf size of semantic docids")
    # the rank-aware loss's weight beside the generation loss (genir.methods.ranking; 0: off): prefix
    # Margin-MSE from the dense+BM25 teacher, as RIPOR trains (the rank group sets its teacher and form)
    rank_weight: float = added(0.0, ge=0)
