"""Tied-Atomic (Nguyen and Yates): atomic docids tied to the model's own document encodings.

``method`` (recipe, settings, the registry's classes), ``model`` (:class:`TiedSeq2Seq`), ``objective``
(contrastive, Margin-MSE), ``search`` (the tied index, generative and faiss search)."""

from genir.methods.tied.method import (
    GROUPS,
    METHODS,
    TiedAtomic,
    TiedAtomicDistill,
    TiedSettings,
    builtin_distillation_data,
    check_distillation,
    check_settings,
    model_extra,
    teacher_embeddings,
    training_pairs,
)
from genir.methods.tied.model import TiedSeq2Seq
from genir.methods.tied.objective import tied_contrastive_loss, tied_margin_mse_loss

__all__ = ["GROUPS", "METHODS", "TiedAtomic", "TiedAtomicDistill", "TiedSeq2Seq", "TiedSettings",
           "builtin_distillation_data", "check_distillation", "check_settings", "model_extra", "teacher_embeddings",
           "tied_contrastive_loss", "tied_margin_mse_loss", "training_pairs"]
