"""One training loop for every method (torch.distributed-ready, atomic checkpoints, resume)."""

from genir.training.data import EncodedTexts, IndexingExamples, build_dsi_examples
from genir.training.loop import Trainer, planned_steps
from genir.training.objectives import seq2seq_loss

__all__ = ["EncodedTexts", "IndexingExamples", "Trainer", "build_dsi_examples", "planned_steps", "seq2seq_loss"]
