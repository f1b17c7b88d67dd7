"""GLEN's settings group (``--set glen.KEY=VALUE``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from genir.settings import added, at_least, choice, inherited, positive


@dataclass
class GlenConfig:
    length: int = at_least(3, 1)  # n, identifier tokens (GLEN Sec. 4.4, NQ320k)
    # budgets: unset, each follows --epochs / --lr / --batch-size (training.*) when given, else its default
    # phase 1 (its batch and rate: training's). 6 over GLEN's default texts (every query-free text), chosen with
    # them on held-out queries; over the light texts (--texts light) 30 gave about the same steps
    keyword_epochs: float | None = inherited(6, "training.epochs", gt=0)
    refine_epochs: float | None = inherited(10, "training.epochs", gt=0)  # phase 2
    negatives: int = at_least(8, 1)  # N_neg per query (Sec. 4.4)
    negative_mode: str = choice("prefix", "prefix", "random")  # prefix-aware dynamic negatives, or random
    lambda_point: float = 0.5  # Eq. 8
    lambda_dist: float = 0.5  # Eq. 7
    batch_size: int | None = inherited(32, "training.batch_size", ge=1)  # phase 2: queries (1 + negatives each)
    lr: float | None = inherited(1e-4, "training.lr", gt=0)  # phase 2
    # --encoder full: the encoder and E (tied: E is the encoder's input word embeddings) at the rates of
    # the authors' code, 2e-4 in phase 1 and 5e-5 in phase 2 (the decoder keeps ``lr``: it starts from
    # random here, where the authors' T5 decoder is pretrained)
    keyword_encoder_lr: float = positive(2e-4)
    refine_encoder_lr: float = positive(5e-5)
    feed: str = choice("hidden", "hidden", "token")  # decoder input d_<t (GLEN), or e_{z_<t} (the ablation)
    # documents sharing an identifier: ranked by cos(w^q, w^d) (Eq. 9) | in random order
    tie_break: str = choice("cosine", "cosine", "random", search=True)
    # multiplies d_t . E^T inside Eq. 6's softmax only; 1 = as written. m^-0.5 is the authors' T5 scale:
    # after phase 1 the unscaled softmax is one-hot (bench/glen_refinement.py) and r_t carries no gradient
    soft_scale: float = positive(1.0)
    # tau = max(tau_floor, exp(-epoch)) (Sec. 3.3.2); 1e-5 is the authors'. 1 keeps tau at 1 all through phase 2,
    # so that with soft_scale < 1 the soft identifiers stay soft and the pairwise loss can still move them
    tau_floor: float = added(1e-5, gt=0, le=1)
    # a phase-1 model folder (a GLEN run's glen/phase1/model) to start phase 2 from instead of training phase 1:
    # phase-2 settings tried without retraining phase 1. Its content is in the stage fingerprint
    phase1_model: str | None = added(None, reads=True)

    def __post_init__(self) -> None:
        if self.negative_mode not in ("prefix", "random"):
            raise ValueError(f"negative_mode must be 'prefix' or 'random', not {self.negative_mode!r}")
        if self.phase1_model is not None and not (Path(self.phase1_model) / "genir_model.json").is_file():
            raise ValueError(f"phase1_model: {self.phase1_model} is not a model folder (no genir_model.json in it)")
        if self.tie_break not in ("cosine", "random"):
            raise ValueError(f"tie_break must be 'cosine' or 'random', not {self.tie_break!r}")
