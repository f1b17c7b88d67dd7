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


class PrefixTree:
    def __init__(self, table: DocIdTable):
        self.table = table
        self.eos = table.vocab_size  # the end-of-docid code, used only when docids are not prefix-free
        self.n_out = table.vocab_size + 1  # decoder outputs: codes + eos
        groups = table.groups()
        seqs = sorted(groups)
        self.needs_eos = self._has_proper_prefix(seqs)
        if self.needs_eos:
            seqs_full = [s + (self.eos,) for s in seqs]
        else:
            seqs_full = list(seqs)
        self.depth = max(len(s) for s in seqs_full)

        node_of: dict[tuple[int, ...], int] = {(): 0}
        edges: list[tuple[int, int, int]] = []  # (parent, code, child)
        for s in seqs_full:
            for t in range(len(s)):
                prefix = s[: t + 1]
                if prefix not in node_of:
                    node_of[prefix] = len(node_of)
                    edges.append((node_of[s[:t]], s[t], node_of[prefix]))
        edges.sort()
        self.n_nodes = len(node_of)
        e = np.asarray(edges, dtype=np.int64).reshape(-1, 3)
        self.edge_key = torch.from_numpy(e[:, 0] * self.n_out + e[:, 1])
        self.edge_code = torch.from_numpy(e[:, 1].copy())
        self.edge_child = torch.from_numpy(e[:, 2].copy())
        counts = np.bincount(e[:, 0], minlength=self.n_nodes)
        self.child_ptr = torch.from_numpy(np.concatenate([[0], np.cumsum(counts)]))
        self.n_children = torch.from_numpy(counts)
        # terminal node -> docid group (list of document indices)
        self.leaf_docs: dict[int, list[int]] = {}
        for s, s_full in zip(seqs, seqs_full, strict=True):
            self.leaf_docs[node_of[s_full]] = groups[s]
        self.is_leaf = torch.zeros(self.n_nodes, dtype=torch.bool)
        self.is_leaf[list(self.leaf_docs)] = True

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
