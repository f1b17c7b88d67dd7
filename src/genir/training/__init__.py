"""One training loop for every method (torch.distributed-ready, atomic checkpoints, resume)."""

from genir.training.data import EncodedTexts, IndexingExamples, build_dsi_examples
from genir.training.loop import TrainConfig, Trainer
from genir.training.objectives import seq2seq_loss

__all__ = ["EncodedTexts", "IndexingExamples", "TrainConfig", "Trainer", "build_dsi_examples", "seq2seq_loss"]
