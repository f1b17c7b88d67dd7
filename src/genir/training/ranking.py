"""Rank-aware training for structured docids: the model's prefix scores distilled from a teacher's margins.

A generation loss alone teaches the decoder one docid per text; it says nothing about how the other
documents under the same prefixes should rank, and a beam search ranks them by their prefix scores. RIPOR
(Zeng et al., "Scalable and Effective Generative Information Retrieval", WWW 2024, prefix-oriented ranking
optimisation) adds a Margin-MSE loss (Hofstätter et al., 2020) at every prefix length: for a text q, its
positive d+ and a teacher-scored negative d-,

    L_rank = sum_l w_l * ( [s_l(q, d+) - s_l(q, d-)] - scale * [T(q, d+) - T(q, d-)] )^2

where s_l(q, d) is the sum of the log-probabilities of d's first l codes, T the teacher's score and w_l a
weight per level. genir's prefix score is the beam search's own (log-softmax over every decoder output, or,
``constrained``, over the codes the prefix tree allows at that node), so the loss trains the very numbers
the search ranks by. This module knows no method: it takes logits and code sequences.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from genir.docids.trie import PrefixTree


def prefix_scores(logits: torch.Tensor, targets: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """(N, L): s_l, the sum of log P(code_t | codes before t) over t <= l, of each row's code sequence.

    ``logits`` (N, L, V) teacher-forced on ``targets`` (N, L; -100 pads a shorter docid, whose score then
    stays at its full length's); ``allowed`` (N, L, V) bool: the log-softmax over the allowed codes only."""
    logits = logits.float()
    if allowed is not None:
        logits = logits.masked_fill(~allowed, float("-inf"))
    logp = F.log_softmax(logits, dim=-1)
    picked = logp.gather(-1, targets.clamp(min=0)[..., None])[..., 0]
    return picked.masked_fill(targets < 0, 0.0).cumsum(-1)


def allowed_along(trie: PrefixTree, targets: torch.Tensor) -> torch.Tensor:
    """(N, L, n_out) bool: at each step of each row's code sequence, the codes the prefix tree allows after
    the codes before it (every code at a padded step, so that its log-softmax stays finite)."""
    trie = trie.on(targets.device)
    nodes = torch.zeros(targets.shape[0], dtype=torch.long, device=targets.device)
    masks = []
    for step in range(targets.shape[1]):
        code = targets[:, step]
        pad = code < 0
        mask = trie.allowed_mask(nodes)
        mask[pad] = True
        masks.append(mask)
        child, _ = trie.advance(nodes, code.clamp(min=0))
        nodes = torch.where(pad, nodes, child)
    return torch.stack(masks, 1)


def level_weights(depth: int, scheme: str, device=None) -> torch.Tensor:
    """w_l over the prefix lengths 1..depth, summing to 1: ``uniform``, ``increasing`` (w_l ~ l: the full
    docid, which ranks within a leaf, counts most) or ``last`` (the full docid only: plain Margin-MSE)."""
    if scheme == "uniform":
        w = torch.ones(depth)
    elif scheme == "increasing":
        w = torch.arange(1, depth + 1, dtype=torch.float32)
    elif scheme == "last":
        w = torch.zeros(depth)
        w[-1] = 1.0
    else:
        raise ValueError(f"unknown level weighting {scheme!r} (uniform, increasing, last)")
    return (w / w.sum()).to(device)


def prefix_margin_mse(scores: torch.Tensor, teacher: torch.Tensor, valid: torch.Tensor, weights: torch.Tensor,
                      scale: float = 1.0) -> torch.Tensor:
    """L_rank (module docstring), averaged over the (text, negative) pairs that are ``valid``.

    ``scores`` (B, C, L): prefix scores of each text's candidates, its positive first; ``teacher`` (B, C): the
    teacher's scores of the same candidates; ``valid`` (B, C) bool: which candidates exist (the positive's
    column must be valid for a row to count); ``weights`` (L,): w_l."""
    student = scores[:, :1, :] - scores[:, 1:, :]  # (B, C-1, L): the model's margin at every prefix length
    target = scale * (teacher[:, :1] - teacher[:, 1:])  # (B, C-1)
    err = ((student - target[..., None]) ** 2 * weights).sum(-1)
    pairs = valid[:, 1:] & valid[:, :1]
    return (err * pairs).sum() / pairs.sum().clamp(min=1)
