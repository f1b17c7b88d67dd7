"""The prefix tree built from the code matrix with numpy equals the one built from a dict of prefixes (the
reference below, genir's earlier construction), array for array, on every docid shape."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genir.docids import DocIdTable, PrefixTree


def reference(table: DocIdTable) -> dict:
    """The tree as genir built it before: sorted distinct docids, a dict of prefixes, sorted edges."""
    groups = table.groups()
    seqs = sorted(groups)
    eos = table.vocab_size
    needs_eos = any(b[: len(a)] == a and len(b) > len(a) for a, b in zip(seqs, seqs[1:], strict=False))
    full = [s + (eos,) for s in seqs] if needs_eos else list(seqs)
    node_of: dict[tuple, int] = {(): 0}
    edges = []
    for s in full:
        for t in range(len(s)):
            if s[: t + 1] not in node_of:
                node_of[s[: t + 1]] = len(node_of)
                edges.append((node_of[s[:t]], s[t], node_of[s[: t + 1]]))
    edges.sort()
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 3)
    return {"needs_eos": needs_eos, "n_nodes": len(node_of), "depth": max(len(s) for s in full),
            "edge_key": e[:, 0] * (eos + 1) + e[:, 1], "edge_child": e[:, 2],
            "leaf_docs": {node_of[f]: groups[s] for s, f in zip(seqs, full, strict=True)}}


def _tables():
    rng = np.random.default_rng(0)
    yield DocIdTable([f"d{i}" for i in range(50)], np.arange(50)[:, None], 50, "atomic")
    yield DocIdTable([f"d{i}" for i in range(300)], rng.integers(0, 4, size=(300, 3)), 4, "collisions")
    naive = [[int(c) for c in str(i)] for i in range(120)]  # "1" is a proper prefix of "10": eos needed
    yield DocIdTable([f"d{i}" for i in range(120)], naive, 10, "naive")
    ragged = [list(rng.integers(0, 5, size=rng.integers(1, 5))) for _ in range(200)]
    yield DocIdTable([f"d{i}" for i in range(200)], ragged, 5, "ragged")
    yield DocIdTable(["only"], [[3, 1]], 4, "one")


@pytest.mark.parametrize("table", list(_tables()), ids=lambda t: t.scheme)
def test_numpy_tree_equals_the_dict_built_tree(table):
    trie, ref = PrefixTree(table), reference(table)
    assert (trie.needs_eos, trie.n_nodes, trie.depth) == (ref["needs_eos"], ref["n_nodes"], ref["depth"])
    assert torch.equal(trie.edge_key, torch.from_numpy(ref["edge_key"]))
    assert torch.equal(trie.edge_child, torch.from_numpy(ref["edge_child"]))
    assert len(trie.leaf_docs) == len(ref["leaf_docs"])
    for node in range(trie.n_nodes):
        assert trie.leaf_docs.get(node) == ref["leaf_docs"].get(node)
        assert (node in trie.leaf_docs) == (node in ref["leaf_docs"]) == bool(trie.is_leaf[node])
    for i in range(len(table)):
        assert trie.contains(trie.table.sequence(i)) if not trie.needs_eos else trie.contains(trie.full_sequence(i))


@pytest.mark.parametrize("table", list(_tables()), ids=lambda t: t.scheme)
def test_ranked_documents_of_a_batch_equal_a_lookup_per_beam(table):
    # the search's result assembly (one gather per batch) against the loop it replaced: a dict lookup per
    # beam in beam order, skipping dead beams and inner nodes, until k documents are covered
    trie, ref = PrefixTree(table), reference(table)
    rng = np.random.default_rng(1)
    nodes = rng.integers(-1, trie.n_nodes + 2, size=(6, 40))  # inner nodes, leaves and nodes out of range
    scores = -np.sort(rng.random((6, 40)), axis=1).astype(np.float32)
    scores[:, 30:] = -np.inf  # dead beams at the end of each row
    scores[2] = -np.inf  # a query with no live beam
    for k in (1, 3, 10, 100):
        expected = []
        for i in range(len(nodes)):
            hits, count = [], 0
            for node, score in zip(nodes[i].tolist(), scores[i].tolist(), strict=True):
                if score == float("-inf") or count >= k:
                    break
                docs = ref["leaf_docs"].get(node)
                if docs is not None:
                    hits.append((score, list(docs)))
                    count += len(docs)
            expected.append(hits)
        assert trie.leaf_docs.ranked(nodes, scores, k) == expected
        assert any(len(h) > 1 for q in expected for _, h in q) or table.scheme != "collisions"  # ties covered
