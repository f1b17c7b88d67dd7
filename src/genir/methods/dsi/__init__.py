"""DSI (Tay et al.): fixed docids (atomic, naive, semantic) and the shared seq2seq retriever."""

from genir.methods.dsi.method import GROUPS, METHODS, DsiAtomic, DsiNaive, DsiSemantic, DsiSettings

__all__ = ["GROUPS", "METHODS", "DsiAtomic", "DsiNaive", "DsiSemantic", "DsiSettings"]
