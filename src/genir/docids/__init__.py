"""Docids are data: a table from document to a tuple of codes, and a prefix tree over it.

Schemes (atomic, naive, semantic, and the learned ones) only produce a :class:`DocIdTable`; the trie and
the beam search never know which scheme made it.
"""

from genir.docids.schemes import SCHEMES, atomic_docids, naive_docids, semantic_docids
from genir.docids.table import DocIdTable
from genir.docids.trie import PrefixTree

__all__ = ["DocIdTable", "PrefixTree", "SCHEMES", "atomic_docids", "naive_docids", "semantic_docids"]
