"""Backbones: an encoder (any HF model, or the bundled MiniLM) feeding a decoder over docid codes.

Importing the package registers every architecture, so that :meth:`DocidSeq2Seq.load` rebuilds the class
that saved a folder."""

from genir.models.codebook import CodebookSeq2Seq
from genir.models.lexical import LexicalSeq2Seq
from genir.models.pretrained import bundled_minilm_path
from genir.models.seq2seq import ARCHITECTURES, DocidSeq2Seq, ModelConfig

__all__ = ["ARCHITECTURES", "CodebookSeq2Seq", "DocidSeq2Seq", "LexicalSeq2Seq", "ModelConfig",
           "bundled_minilm_path"]
