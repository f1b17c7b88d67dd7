"""The classic DSI docid schemes (Tay et al. 2022): atomic, naive string, semantic (hierarchical k-means)."""

from __future__ import annotations

import numpy as np

from genir.docids.table import DocIdTable


def atomic_docids(doc_ids: list[str]) -> DocIdTable:
    """One new code per document: a single decoding step over N outputs."""
    return DocIdTable(doc_ids, np.arange(len(doc_ids)).reshape(-1, 1), len(doc_ids), "atomic")


def naive_docids(doc_ids: list[str]) -> DocIdTable:
    """The document's own identifier, one code per character (DSI's naive string docids)."""
    alphabet = sorted({ch for d in doc_ids for ch in d})
    index = {ch: i for i, ch in enumerate(alphabet)}
    codes = [[index[ch] for ch in d] for d in doc_ids]
    return DocIdTable(doc_ids, codes, len(alphabet), "naive", {"alphabet": "".join(alphabet)})


def _faiss_kmeans(x: np.ndarray, k: int, seed: int):
    import faiss

    km = faiss.Kmeans(x.shape[1], k, niter=20, seed=seed, verbose=False, spherical=False,
                      min_points_per_centroid=1, max_points_per_centroid=1 << 20)
    km.train(np.ascontiguousarray(x, dtype=np.float32))
    return km


def _kmeans(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Cluster labels of k-means (faiss)."""
    km = _faiss_kmeans(x, k, seed)
    return km.index.search(np.ascontiguousarray(x, dtype=np.float32), 1)[1].ravel()


def kmeans_centroids(x: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """k centroids of k-means (faiss), (k, D); fewer points than k is an error (a codebook needs k)."""
    if len(x) < k:
        raise ValueError(f"k-means with k={k} needs at least {k} points, got {len(x)}")
    return _faiss_kmeans(x, k, seed).centroids.copy()


def semantic_docids(doc_ids: list[str], embeddings: np.ndarray, c: int = 32, seed: int = 0) -> DocIdTable:
    """Hierarchical k-means: c clusters per node, recursively, until a cluster holds <= c documents;
    a document's last code is its position in that leaf (DSI Sec. 3.2, with k = c)."""
    if len(doc_ids) != len(embeddings):
        raise ValueError(f"{len(doc_ids)} documents but {len(embeddings)} embeddings")
    if c < 2:
        raise ValueError("c must be at least 2")
    codes: list[list[int]] = [[] for _ in doc_ids]
    stack: list[tuple[np.ndarray, list[int], int]] = [(np.arange(len(doc_ids)), [], 0)]
    while stack:
        idx, prefix, depth = stack.pop()
        if len(idx) <= c:
            for pos, i in enumerate(idx):
                codes[i] = prefix + [pos]
            continue
        labels = _kmeans(embeddings[idx], c, seed + depth)
        if np.bincount(labels, minlength=c).max() == len(idx):
            # identical embeddings (e.g. empty documents): split evenly so the recursion ends
            labels = np.arange(len(idx)) % c
        for j in range(c):
            members = idx[labels == j]
            if len(members):
                stack.append((members, prefix + [j], depth + 1))
    return DocIdTable(doc_ids, codes, c, "semantic", {"c": c, "seed": seed})


SCHEMES = {"atomic": atomic_docids, "naive": naive_docids, "semantic": semantic_docids}


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class _KMeansTree:
    """A trained hierarchical k-means tree read back from its docids: each prefix's centroid (the mean of
    its documents' unit embeddings) and children, for placing documents it was not built from."""

    def __init__(self, table: DocIdTable, embeddings: np.ndarray):
        self.seqs = table.sequences()
        self.emb = _unit(embeddings)
        members: dict[tuple[int, ...], list[int]] = {}
        for i, s in enumerate(self.seqs):
            for t in range(len(s)):
                members.setdefault(tuple(s[:t]), []).append(i)
        self.centroid = {p: self.emb[idx].mean(0) for p, idx in members.items()}
        self.children: dict[tuple[int, ...], set[int]] = {}
        for p in members:
            if p:
                self.children.setdefault(p[:-1], set()).add(p[-1])

    def descend(self, e: np.ndarray, stop) -> tuple[int, ...]:
        """From the root to the child whose centroid is nearest ``e``, until ``stop(prefix)`` or a leaf."""
        prefix: tuple[int, ...] = ()
        while not stop(prefix) and self.children.get(prefix):
            prefix = prefix + (max(self.children[prefix], key=lambda j, p=prefix: float(self.centroid[p + (j,)] @ e)),)
        return prefix


def semantic_reindex(table: DocIdTable, embeddings: np.ndarray, new_embeddings: np.ndarray
                     ) -> tuple[list[list[int]], int]:
    """Docids for another corpus in a trained hierarchical k-means tree, so that its codes keep the meaning
    the model learned (the trained corpus's documents are gone: every leaf starts empty). A document
    descends as in :func:`semantic_place`, from the root to the child whose centroid is nearest, and takes
    its leaf's first free position; a full leaf (c documents) sends it to the nearest leaf, by leaf
    centroid, that has room. Returns (codes, documents sent to another leaf than their own)."""
    c = table.vocab_size
    tree = _KMeansTree(table, embeddings)
    leaves = sorted({tuple(s[:-1]) for s in tree.seqs})
    if len(new_embeddings) > len(leaves) * c:
        raise ValueError(f"the trained tree holds {len(leaves) * c} docids ({len(leaves)} leaves of {c}); "
                         f"this corpus has {len(new_embeddings)} documents")
    leaf_set, leaf_matrix = set(leaves), np.stack([tree.centroid[p] for p in leaves])
    used = {p: 0 for p in leaves}
    out, moved = [], 0
    for e in _unit(new_embeddings):
        prefix = tree.descend(e, leaf_set.__contains__)
        if used[prefix] >= c:
            moved += 1
            for j in np.argsort(-(leaf_matrix @ e), kind="stable"):
                if used[leaves[j]] < c:
                    prefix = leaves[j]
                    break
        out.append([*prefix, used[prefix]])
        used[prefix] += 1
    return out, moved


def semantic_place(table: DocIdTable, embeddings: np.ndarray, new_embeddings: np.ndarray
                   ) -> tuple[list[list[int]], int]:
    """Docids for new documents in a fixed hierarchical k-means tree (no re-clustering): from the root,
    the child whose centroid (the mean of its documents' embeddings, cosine) is nearest, down to a leaf
    cluster; there the first free position. A full leaf (c documents) has none: the document shares the
    docid of its nearest neighbour in that leaf. Returns (codes, collisions)."""
    c = table.vocab_size
    tree = _KMeansTree(table, embeddings)
    seqs, emb = tree.seqs, tree.emb
    leaf_used: dict[tuple[int, ...], dict[int, int]] = {}  # leaf prefix -> position -> a document there
    for i, s in enumerate(seqs):
        leaf_used.setdefault(s[:-1], {})[s[-1]] = i
    out, collisions = [], 0
    for e in _unit(new_embeddings):
        prefix = tree.descend(e, leaf_used.__contains__)
        used = leaf_used.setdefault(prefix, {})
        free = [j for j in range(c) if j not in used]
        if free:
            used[free[0]] = -1
            out.append([*prefix, free[0]])
        else:
            nearest = max(used.values(), key=lambda i: float(emb[i] @ e) if i >= 0 else -2.0)
            out.append(list(seqs[nearest]) if nearest >= 0 else [*prefix, 0])
            collisions += 1
    return out, collisions
