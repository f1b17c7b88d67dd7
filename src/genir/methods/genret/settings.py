"""GenRet's settings group (``--set genret.KEY=VALUE``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from genir.settings import added, at_least, choice, inherited, positive


@dataclass
class GenRetConfig:
    codes: int = at_least(512, 2)  # K, codes per step (GenRet Sec. 4.4)
    length: int | None = at_least(None, 1)  # M; None: the smallest M with K^M >= headroom x documents
    headroom: float = positive(10.0)
    # budgets: unset, each follows --epochs / --lr / --batch-size (training.*) when given, else its default
    epochs: float | None = inherited(30, "training.epochs", gt=0)  # per progressive step
    # codebook initialisation warm-up (continuous d_T), per step: a tenth of a step's epochs when those are set
    warmup_epochs: float | None = inherited(3, "genret.epochs", scale=0.1)
    # after the last step: seq2seq training on the final, fixed docids (the authors' code's "fit" stage;
    # the last step trains queries towards re-assigned codes, the stored docids are plain argmax); 0 = off
    fit_epochs: float | None = inherited(30, "training.epochs")
    batch_size: int | None = inherited(128, "training.batch_size", ge=1, added=True)
    lr: float | None = inherited(5e-4, "training.lr", gt=0)  # GenRet Sec. 4.4 (AdamW)
    reassign: bool = True  # docid re-assignment by Sinkhorn-Knopp during training
    diverse_init: bool = True  # warm-up + constrained k-means codebook initialisation (else random)
    epsilon: float = positive(1.0)  # Sinkhorn eps (GenRet Sec. 4.4)
    sinkhorn_iterations: int = at_least(100, 1)
    rec_set: str = choice("bank", "bank", "batch")  # S(z_<t): whole corpus, refreshed, or the batch
    # the warm-up also trains the ranking term of L_Ret (q_T . d_T, in-batch): see GenRetObjective
    warmup_ranking: bool = True
    bank_refresh: int = 0  # steps between bank refreshes; 0 = once per epoch
    # how the corpus's docids are fixed after each step: "argmax" (Eq. 4, plain look-up; the authors' code)
    # or "sinkhorn" (Sec. 3.3.2's re-assignment applied to the corpus, per group of documents sharing z_<T)
    assign: str = choice("argmax", "argmax", "sinkhorn")
    # documents sharing a docid: ordered by q_T . d_T, the score GenRet trains for them | in corpus order
    tie_break: str = choice("score", "score", "corpus", search=True)
    collapse_share: float = 0.5  # warn when one docid prefix holds more than this share of documents
    collapse_diversity: float = 0.2  # ... or when step diversity d falls below this
    # the fit stage's rank-aware loss weight beside its seq2seq loss (genir.methods.ranking; 0: off, the
    # paper's fit): prefix Margin-MSE from the dense+BM25 teacher, as RIPOR (Zeng et al., WWW 2024) trains;
    # the rank group sets its teacher and form. 0.01 won on SciFact's held-out training queries at seeds 0-2
    # (+0.030 nDCG@10 on average; docs/experiments/rank-aware-training.md), at ~3x the fit stage's time
    rank_weight: float = added(0.01, was=0.0, ge=0)  # was: folders made before it, and until 0.01 won

    def __post_init__(self) -> None:
        if self.rec_set not in ("bank", "batch"):
            raise ValueError(f"rec_set must be 'bank' or 'batch', not {self.rec_set!r}")
        if self.assign not in ("argmax", "sinkhorn"):
            raise ValueError(f"assign must be 'argmax' or 'sinkhorn', not {self.assign!r}")
        if self.codes < 2:
            raise ValueError("codes (K) must be at least 2")

    def docid_length(self, n_docs: int) -> int:
        """GenRet Sec. 4.4: M grows with the corpus so that docids are (nearly) unique."""
        if self.length:
            return self.length
        return max(1, math.ceil(math.log(max(n_docs, 2) * self.headroom) / math.log(self.codes)))
