"""Backbones: an encoder (any HF model, or the bundled MiniLM) feeding a decoder over docid codes."""

from genir.models.seq2seq import DocidSeq2Seq, ModelConfig

__all__ = ["DocidSeq2Seq", "ModelConfig"]
