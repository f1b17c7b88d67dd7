"""Balanced code assignment for learned docids, and how to measure balance.

- :func:`sinkhorn` - GenRet's docid re-assignment (Sec. 3.3.2): H* = Diag(u) exp(H / eps) Diag(v) by
  Sinkhorn-Knopp, so that a batch spreads over the codes instead of piling onto a few.
- :func:`constrained_kmeans` - GenRet's codebook initialisation (Sec. 3.3.2): k-means whose assignment
  step is a min-cost flow with cluster-size bounds (k-means-constrained), centroids become the codebook.
- :func:`diversity` - GenRet's docid diversity metric d (Sec. 5.3) and :func:`largest_share`, which
  together say whether learned docids collapsed.
"""

from __future__ import annotations

import math

import numpy as np
import torch


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, epsilon: float = 1.0, iterations: int = 100) -> torch.Tensor:
    """GenRet Sec. 3.3.2: log H* for a batch of dot-product scores H (B, K).

    H* = Diag(u) exp(H / eps) Diag(v), with u, v found by Sinkhorn-Knopp so that every row (document)
    carries mass 1/B and every column (code) mass 1/K. Computed in the log domain in float64, where the
    iterations are the same but exp(H / eps) cannot overflow. argmax over a row of the result is the
    re-assigned code of that document.
    """
    log_p = scores.double() / epsilon
    b, k = log_p.shape
    log_p = log_p - torch.logsumexp(log_p.reshape(-1), 0)
    for _ in range(iterations):
        log_p = log_p - torch.logsumexp(log_p, 0, keepdim=True) - math.log(k)  # columns -> 1/K
        log_p = log_p - torch.logsumexp(log_p, 1, keepdim=True) - math.log(b)  # rows -> 1/B
    return log_p.to(scores.dtype)


def constrained_kmeans(x: np.ndarray, k: int, seed: int = 0, slack: float = 2.0,
                       max_iter: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Balanced k-means (min-cost-flow assignment): every cluster holds between n/(k*slack) and
    n*slack/k points. Returns (centroids (k, D), labels (n,)).

    One initialisation (n_init=1): ten (the library default) cost ten times as long for the same balance.
    With fewer points than clusters, the points themselves become the first centroids and the rest are
    random points plus noise (every code still gets a vector).
    """
    from k_means_constrained import KMeansConstrained

    x = np.ascontiguousarray(x, dtype=np.float64)
    n = len(x)
    rng = np.random.default_rng(seed)
    if n < 2 * k:  # too few points to fill k clusters under the size bounds
        n_extra = max(k - n, 0)
        extra = x[rng.integers(0, n, size=n_extra)] + rng.normal(0, x.std() * 0.1 + 1e-6, (n_extra, x.shape[1]))
        centroids = np.concatenate([x[:k], extra])[:k]
        labels = ((x @ centroids.T) - 0.5 * (centroids ** 2).sum(1)).argmax(1)
        return centroids.astype(np.float32), labels
    size_min = max(1, int(n / (k * slack)))
    size_max = max(size_min + 1, math.ceil(n * slack / k))
    km = KMeansConstrained(n_clusters=k, size_min=size_min, size_max=size_max, n_init=1, max_iter=max_iter,
                           random_state=seed)
    labels = km.fit_predict(x)
    return km.cluster_centers_.astype(np.float32), np.asarray(labels)


def diversity(codes: np.ndarray, k: int) -> float:
    """GenRet Sec. 5.3: d = 1 - 1/(2n) sum_j |n_j - n/K|; 1 = perfectly uniform, 1/K = all on one code."""
    codes = np.asarray(codes).ravel()
    n = len(codes)
    if n == 0:
        return 0.0
    counts = np.bincount(codes, minlength=k)
    return float(1.0 - np.abs(counts - n / k).sum() / (2 * n))


def largest_share(codes: np.ndarray) -> float:
    """Share of documents on the most frequent docid (rows of ``codes`` are docid prefixes)."""
    codes = np.asarray(codes)
    if codes.ndim == 1:
        codes = codes[:, None]
    if len(codes) == 0:
        return 0.0
    _, counts = np.unique(codes, axis=0, return_counts=True)
    return float(counts.max() / len(codes))
