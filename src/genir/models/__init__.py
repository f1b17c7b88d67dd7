"""Backbones: an encoder (any HF model, or the bundled MiniLM) feeding a decoder over docid codes.

A method family that needs its own model subclasses :class:`DocidSeq2Seq` and registers it with
:func:`register_architecture`, and its package declares it under the ``genir.architectures`` entry points
(pyproject.toml); :meth:`DocidSeq2Seq.load` rebuilds the class that saved a folder."""

from genir.models.pretrained import bundled_minilm_path
from genir.models.seq2seq import ARCHITECTURES, DocidSeq2Seq, ModelConfig, register_architecture

__all__ = ["ARCHITECTURES", "DocidSeq2Seq", "ModelConfig", "bundled_minilm_path", "register_architecture"]
