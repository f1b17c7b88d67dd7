"""Sentence embeddings from encoder states (sentence-transformers' mean pooling + normalisation, which is
what all-MiniLM-L6-v2 computes): one definition for the dense path, Tied-Atomic and the rank loss's teacher."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def mean_pooled(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, L, d) token states and (B, L) attention mask -> (B, d) unit-length mean over the real tokens."""
    weights = mask.to(states.dtype)[..., None]
    return F.normalize((states * weights).sum(1) / weights.sum(1).clamp(min=1e-9), dim=-1)
