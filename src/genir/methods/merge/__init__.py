"""MERGE (Zhang et al.): RQ-VAE docids shaped by graded relevance; ``rqvae``, its vanilla baseline.

``method`` (the recipe and the registry's classes), ``training`` (settings, Eq. 3-9 losses, batches)."""

from genir.methods.merge.method import GROUPS, METHODS, Merge, RqVae
from genir.methods.merge.settings import MergeConfig

__all__ = ["GROUPS", "METHODS", "Merge", "MergeConfig", "RqVae"]
