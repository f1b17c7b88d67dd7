"""MERGE's settings group (``--set merge.KEY=VALUE``), shared by ``rqvae``."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from genir.settings import added, at_least, choice, derived, inherited, positive


@dataclass
class MergeConfig:
    levels: int = at_least(4, 1)  # m (MERGE Sec. 4.1: docid length 4)
    codes: int = at_least(256, 2)  # K per level
    latent_dim: int = at_least(32, 1)
    hidden: tuple[int, ...] = (512, 256, 128, 64)
    commitment: float = 1.0  # alpha of Eq. 2 (Appendix C)
    # the RQ-VAE's budget: unset, each follows --epochs / --lr / --batch-size (training.*) when given
    epochs: float | None = inherited(300, "training.epochs", gt=0)  # Sec. 4.1
    batch_size: int | None = inherited(2048, "training.batch_size", ge=1)
    lr: float | None = inherited(1e-3, "training.lr", gt=0)
    weight_decay: float = 1e-4
    lambda_align: float = 0.01  # lambda_1, Eq. 8
    lambda_rel: float = 0.001  # lambda_2, Eq. 8
    betas: tuple[float, ...] | None = None  # beta_l, Eq. 7 (None: see level_weights)
    temperature: float = positive(0.7)  # tau of Eq. 5 (Appendix C)
    margin: float = 0.2  # gamma of Eq. 6 (Appendix C)
    # ablation switches (MERGE Table 2); relevance=False is the vanilla RQ-VAE baseline
    relevance: bool = derived(True)  # set by the method: merge (True) or rqvae (False)
    align: bool = True
    outer: bool = True
    inner: bool = True
    position_weight: bool = True  # w_t = 1/sqrt(t) in the retriever's loss (Eq. 9)
    # the dense embeddings the RQ-VAE quantises: the zero-shot encoder's (dense.model) or the same encoder
    # fine-tuned on the training queries, as dense-trained trains it (RIPOR's relevance-based docids)
    docid_encoder: str = choice("zero-shot", "zero-shot", "trained", added=True)
    decollide: bool = True  # Sinkhorn re-assignment of colliding docids (Sec. 3.1.3)
    # the rank-aware loss's weight beside Eq. 9's loss (genir.methods.ranking; 0: off): prefix
    # Margin-MSE from the dense+BM25 teacher, as RIPOR trains (the rank group sets its teacher and form)
    rank_weight: float = added(0.0, ge=0)
    extra: dict = field(default_factory=dict, metadata={"derived": True})

    def __post_init__(self) -> None:
        if self.betas is not None and len(self.betas) != self.levels:
            raise ValueError(f"betas needs one weight per level ({self.levels}), got {len(self.betas)}")

    @property
    def level_weights(self) -> tuple[float, ...]:
        """beta_l of Eq. 7: as set, else 1.0, 0.75, 0.5, 0.25 for 4 levels (evenly from 1 to .25 otherwise).
        The Table 2 ablations are betas, as MERGE defines them: "w/o L_outer" is beta_l = 0 (the inner term
        at full weight on every level), "w/o L_inner" is beta_l = 1."""
        if not self.outer and self.inner:
            return (0.0,) * self.levels
        if not self.inner and self.outer:
            return (1.0,) * self.levels
        if self.betas is not None:
            return tuple(self.betas)
        if self.levels == 4:
            return (1.0, 0.75, 0.5, 0.25)
        return tuple(float(b) for b in np.linspace(1.0, 0.25, self.levels))
