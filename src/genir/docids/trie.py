"""A prefix tree over docids, stored as flat arrays so that the beam search asks it for whole batches.

Nodes are numbered; node 0 is the root. Edges are kept sorted by (parent, code), so
- the allowed codes of a batch of nodes are one gather (CSR ranges), and
- the child reached by (node, code) is one ``searchsorted`` over ``parent * n_out + code``.
When some docid is a proper prefix of another, every docid gets an end-of-docid code (``eos``) so the
two stay distinguishable; otherwise a node without children is where a docid ends.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from genir.docids.table import DocIdTable


class LeafDocs:
    """Terminal node -> the documents carrying that docid (corpus order), as CSR arrays: ``get``,
    ``in`` and ``[]`` as a dict would answer them, at a few bytes per document."""

    def __init__(self, n_nodes: int, leaf_nodes: np.ndarray, ptr: np.ndarray, docs: np.ndarray):
        self.row = np.full(n_nodes, -1, dtype=np.int64)
        self.row[leaf_nodes] = np.arange(len(leaf_nodes))
        self.ptr, self.docs = ptr, docs

    def get(self, node: int, default=None):
        r = self.row[node] if 0 <= node < len(self.row) else -1
        return default if r < 0 else self.docs[self.ptr[r]: self.ptr[r + 1]].tolist()

    def __getitem__(self, node: int) -> list[int]:
        out = self.get(node)
        if out is None:
            raise KeyError(node)
        return out

    def __contains__(self, node: int) -> bool:
        return 0 <= node < len(self.row) and self.row[node] >= 0

    def __len__(self) -> int:
        return len(self.ptr) - 1

    def ranked(self, nodes: np.ndarray, scores: np.ndarray, k: int,
               columns: list | None = None) -> list[list[tuple[float, list[int]]]]:
        """Beam search's output (B, W) nodes and scores, best first -> per query, (score, documents) of each
        docid in beam order until ``k`` documents are covered; dead beams (-inf) and nodes that end no docid
        are skipped. One gather over the whole batch instead of a dict lookup per beam. ``columns`` (a list)
        receives, per query, the beam (column of ``nodes``) of each docid returned."""
        rows = np.where((nodes >= 0) & (nodes < len(self.row)), self.row[np.clip(nodes, 0, len(self.row) - 1)], -1)
        valid = (rows >= 0) & np.isfinite(scores)
        safe = np.maximum(rows, 0)
        start, end = self.ptr[safe], self.ptr[safe + 1]
        counts = np.where(valid, end - start, 0)
        before = np.cumsum(counts, axis=1) - counts  # documents covered by the better docids
        keep = valid & (before < k)
        out = []
        for i in range(len(nodes)):
            picked = np.flatnonzero(keep[i])
            if columns is not None:
                columns.append(picked.tolist())
            s, e, sc = start[i, picked].tolist(), end[i, picked].tolist(), scores[i, picked].tolist()
            out.append([(score, self.docs[a:b].tolist()) for score, a, b in zip(sc, s, e, strict=True)])
        return out

    def nbytes(self) -> int:
        return int(self.row.nbytes + self.ptr.nbytes + self.docs.nbytes)


class PrefixTree:
    def __init__(self, table: DocIdTable):
        """Built from the code matrix with numpy (no dict of prefixes): the distinct docids sorted
        lexicographically, nodes numbered in that order (a prefix gets its number where it first appears),
        edges sorted by (parent, code). Memory and time grow with the documents, a few arrays of them."""
        self.table = table
        self.eos = table.vocab_size  # the end-of-docid code, used only when docids are not prefix-free
        self.n_out = table.vocab_size + 1  # decoder outputs: codes + eos
        codes = np.asarray(table.codes, dtype=np.int64)
        if codes.ndim != 2 or codes.shape[0] == 0:
            raise ValueError("a prefix tree needs at least one docid")
        # distinct docids in lexicographic order (-1 pads a shorter one, which so sorts before its extensions)
        order = np.lexsort(codes.T[::-1]) if codes.shape[1] else np.arange(len(codes))
        ranked = codes[order]
        first = np.ones(len(ranked), dtype=bool)
        first[1:] = (ranked[1:] != ranked[:-1]).any(1)
        uniq = ranked[first]
        group_of_sorted = np.cumsum(first) - 1  # for each sorted document, its distinct docid
        lens = (uniq >= 0).sum(1)
        # a proper prefix sorts right before a docid that extends it
        prefix_of_next = (lens[:-1] < lens[1:]) & np.all((uniq[:-1] == uniq[1:]) | (uniq[:-1] < 0), axis=1)
        self.needs_eos = bool(prefix_of_next.any())
        if self.needs_eos:
            uniq = np.concatenate([uniq, np.full((len(uniq), 1), -1, dtype=np.int64)], axis=1)
            uniq[np.arange(len(uniq)), lens] = self.eos
            lens = lens + 1
        self.depth = int(lens.max())
        uniq = uniq[:, : self.depth]
        n, width = uniq.shape
        # the first position where each docid differs from the one before it: its prefixes from there are new
        diff = np.ones((n, width), dtype=bool)
        diff[1:] = uniq[1:] != uniq[:-1]
        split = np.where(diff.any(1), diff.argmax(1), width)
        split[0] = 0
        pos = np.arange(width)[None, :]
        valid = pos < lens[:, None]
        new = valid & (pos >= split[:, None])
        # node ids in row-major order of the new prefixes (the root is 0); an old prefix takes the id above it
        ids = np.zeros((n, width), dtype=np.int64)
        ids[new] = np.arange(1, int(new.sum()) + 1)
        ids = np.maximum.accumulate(ids, axis=0)
        self.n_nodes = int(new.sum()) + 1
        parent = np.concatenate([np.zeros((n, 1), dtype=np.int64), ids[:, :-1]], axis=1)
        e_parent, e_code, e_child = parent[new], uniq[new], ids[new]
        edge_order = np.lexsort((e_code, e_parent))
        e_parent, e_code, e_child = e_parent[edge_order], e_code[edge_order], e_child[edge_order]
        self.edge_key = torch.from_numpy(e_parent * self.n_out + e_code)
        self.edge_code = torch.from_numpy(np.ascontiguousarray(e_code))
        self.edge_child = torch.from_numpy(np.ascontiguousarray(e_child))
        counts = np.bincount(e_parent, minlength=self.n_nodes)
        self.child_ptr = torch.from_numpy(np.concatenate([[0], np.cumsum(counts)]))
        self.n_children = torch.from_numpy(counts)
        # terminal node -> the documents of that docid: ``order`` lists them grouped by docid, and in corpus
        # order within one (lexsort is stable)
        leaf_nodes = ids[np.arange(n), lens - 1]
        ptr = np.concatenate([[0], np.cumsum(np.bincount(group_of_sorted, minlength=n))])
        self.leaf_docs = LeafDocs(self.n_nodes, leaf_nodes, ptr, order)
        self.is_leaf = torch.zeros(self.n_nodes, dtype=torch.bool)
        self.is_leaf[torch.from_numpy(leaf_nodes)] = True

    _ARRAYS = ("edge_key", "edge_code", "edge_child", "child_ptr", "n_children", "is_leaf")

    def on(self, device: torch.device | str) -> PrefixTree:
        """This tree with its arrays on ``device`` (copied once per device and kept): the beam search then
        runs where the model's logits are, with no host round trip per step."""
        device = torch.device(device)
        if self.is_leaf.device == device:
            return self
        cache = self.__dict__.setdefault("_devices", {})
        if device not in cache:
            moved = copy.copy(self)
            moved.__dict__.pop("_devices", None)
            for name in self._ARRAYS:
                setattr(moved, name, getattr(self, name).to(device))
            cache[device] = moved
        return cache[device]

    @staticmethod
    def _has_proper_prefix(sorted_seqs: list[tuple[int, ...]]) -> bool:
        # in lexicographic order a proper prefix sorts immediately before some sequence that extends it
        return any(b[: len(a)] == a and len(b) > len(a) for a, b in zip(sorted_seqs, sorted_seqs[1:], strict=False))

    def edges(self, nodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every edge out of ``nodes`` (one CSR gather), grouped by node in order: (position in ``nodes``,
        code, child node)."""
        nodes = nodes.reshape(-1)
        counts = self.n_children[nodes]
        dev = nodes.device
        rows = torch.repeat_interleave(torch.arange(nodes.numel(), device=dev), counts)
        first = torch.cumsum(counts, 0) - counts
        edge = torch.repeat_interleave(self.child_ptr[nodes] - first, counts) + torch.arange(len(rows), device=dev)
        return rows, self.edge_code[edge], self.edge_child[edge]

    def allowed_mask(self, nodes: torch.Tensor) -> torch.Tensor:
        """(len(nodes), n_out) bool: which codes continue each node's prefix to some docid."""
        rows, codes, _ = self.edges(nodes)
        mask = torch.zeros(nodes.numel(), self.n_out, dtype=torch.bool, device=nodes.device)
        mask[rows, codes] = True
        return mask

    def advance(self, nodes: torch.Tensor, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Children reached by following ``codes`` from ``nodes``, and whether that edge exists."""
        key = nodes * self.n_out + codes
        pos = torch.searchsorted(self.edge_key, key).clamp(max=max(len(self.edge_key) - 1, 0))
        found = self.edge_key[pos] == key
        return torch.where(found, self.edge_child[pos], torch.zeros_like(nodes)), found

    def contains(self, seq: tuple[int, ...]) -> bool:
        node = torch.zeros(1, dtype=torch.long)
        for c in seq:
            node, ok = self.advance(node, torch.tensor([c]))
            if not ok.item():
                return False
        return bool(self.is_leaf[node].item())

    def prefix(self, node: int) -> tuple[int, ...]:
        """The codes that lead from the root to ``node`` (eos included where the tree uses it)."""
        if "_parent" not in self.__dict__:
            parent = np.zeros(self.n_nodes, dtype=np.int64)
            code = np.zeros(self.n_nodes, dtype=np.int64)
            child = self.edge_child.cpu().numpy()
            parent[child] = self.edge_key.cpu().numpy() // self.n_out
            code[child] = self.edge_code.cpu().numpy()
            self._parent, self._code = parent, code
        out = []
        while node:
            out.append(int(self._code[node]))
            node = int(self._parent[node])
        return tuple(reversed(out))

    def full_sequence(self, i: int) -> tuple[int, ...]:
        """The code sequence the decoder emits for document ``i`` (with eos when the tree needs it)."""
        s = self.table.sequence(i)
        return s + (self.eos,) if self.needs_eos else s

    def nbytes(self) -> int:
        return int(sum(t.numel() * t.element_size() for t in
                       (self.edge_key, self.edge_code, self.edge_child, self.child_ptr, self.n_children)))
