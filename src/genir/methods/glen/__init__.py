"""GLEN (Lee et al., "Generative Retrieval via Lexical Index Learning").

``method`` (the two-phase recipe and the registry's classes), ``training`` (settings, phase 2's losses and
negatives), ``model`` (:class:`LexicalSeq2Seq`), ``docids`` (keyword IDs), ``search`` (Eq. 9 search)."""

from genir.methods.glen.method import GROUPS, METHODS, Glen, GlenKeyword, identify_texts
from genir.methods.glen.model import LexicalSeq2Seq
from genir.methods.glen.search import LexicalSearcher
from genir.methods.glen.settings import GlenConfig

__all__ = ["GROUPS", "METHODS", "Glen", "GlenConfig", "GlenKeyword", "LexicalSearcher", "LexicalSeq2Seq",
           "identify_texts"]
