"""The beam search against brute force, the trie against invalid docids, on tiny random models."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from genir.docids import DocIdTable, PrefixTree, atomic_docids, naive_docids, semantic_docids
from genir.models import DocidSeq2Seq, ModelConfig
from genir.search.beam import beam_search, sequence_scores


def _random_table(n: int, vocab: int, max_len: int, seed: int, prefix_free: bool = False) -> DocIdTable:
    rng = random.Random(seed)
    seqs: set[tuple[int, ...]] = set()
    while len(seqs) < n:
        length = max_len if prefix_free else rng.randint(1, max_len)
        seqs.add(tuple(rng.randrange(vocab) for _ in range(length)))
    return DocIdTable([f"d{i}" for i in range(n)], [list(s) for s in sorted(seqs)], vocab)


@pytest.mark.parametrize("backbone", ["tiny_bert", "tiny_t5"])
@pytest.mark.parametrize("prefix_free", [True, False])
def test_full_beam_equals_brute_force(backbone, prefix_free, request):
    torch.manual_seed(0)
    table = _random_table(40, vocab=5, max_len=3, seed=1, prefix_free=prefix_free)
    trie = PrefixTree(table)
    assert trie.needs_eos == (not prefix_free) or not trie.needs_eos
    model = DocidSeq2Seq(ModelConfig(n_codes=5, backbone=request.getfixturevalue(backbone), decoder_heads=2,
                                     decoder_ff=64, dropout=0.0)).eval()
    memory, mask = model.encode_texts(["first query", "a second, longer query about cells"])
    nodes, scores = beam_search(model, trie, memory, mask, beam=trie.n_nodes)
    brute = sequence_scores(model, trie, memory, mask)
    for qi in range(2):
        got = [(trie.leaf_docs[n][0], s) for n, s in zip(nodes[qi].tolist(), scores[qi].tolist(), strict=True)
               if s > float("-inf")]
        assert len(got) == len(table), "a beam as wide as the tree must reach every docid"
        want = sorted(range(len(table)), key=lambda d: -brute[qi, d].item())
        np.testing.assert_allclose([s for _, s in got], brute[qi, want].numpy(), rtol=1e-4, atol=1e-4)
        # same order wherever the brute-force scores are not tied
        gaps = np.diff(brute[qi, want].numpy())
        got_docs = [d for d, _ in got]
        for i, gap in enumerate(gaps):
            if abs(gap) > 1e-4:
                assert set(got_docs[: i + 1]) == set(want[: i + 1])


def test_a_prefix_beam_expands_only_the_best_prefixes_into_the_beam(tiny_bert):
    """search.prefix_beam P: after the first step only the P best first codes stay, and the last step ranks
    all their children; the beam's docids are the best of those by log P(docid | q), as brute force finds."""
    torch.manual_seed(0)
    table = _random_table(30, vocab=6, max_len=2, seed=2, prefix_free=True)
    trie = PrefixTree(table)
    model = DocidSeq2Seq(ModelConfig(n_codes=6, backbone=tiny_bert, decoder_heads=2, decoder_ff=64,
                                     dropout=0.0)).eval()
    queries = ["first query", "a second, longer query about cells", "third", "cells and vitamins"]
    memory, mask = model.encode_texts(queries)
    brute = sequence_scores(model, trie, memory, mask)
    with torch.no_grad():
        logits, _ = model.step(model.start(memory, mask), torch.full((len(queries),), model.bos))
    first = torch.log_softmax(logits.float(), -1)
    present = sorted({s[0] for s in table.sequences()})
    narrower = 0
    wide, _ = beam_search(model, trie, memory, mask, beam=8)
    for prefix_beam in (1, 2):
        nodes, scores = beam_search(model, trie, memory, mask, beam=8, prefix_beam=prefix_beam)
        for qi in range(len(queries)):
            kept = sorted(present, key=lambda c: -first[qi, c].item())[:prefix_beam]
            under = [d for d in range(len(table)) if table.sequence(d)[0] in kept]
            want = sorted(under, key=lambda d: -brute[qi, d].item())[:8]
            got = [trie.leaf_docs[n][0] for n, s in zip(nodes[qi].tolist(), scores[qi].tolist(), strict=True)
                   if s > float("-inf")]
            assert got == want
            np.testing.assert_allclose(scores[qi, : len(got)].numpy(), brute[qi, want].numpy(), atol=1e-4)
            narrower += set(got) != {trie.leaf_docs[n][0] for n in wide[qi].tolist()}
    assert narrower, "the full beam reached other prefixes on some query: the case is one the setting changes"
    again, _ = beam_search(model, trie, memory, mask, beam=8, prefix_beam=8)
    assert torch.equal(again, wide)  # as wide as the beam: the beam search as it was


def test_beam_never_yields_invalid_docid(tiny_bert):
    torch.manual_seed(1)
    table = _random_table(200, vocab=7, max_len=4, seed=3)
    trie = PrefixTree(table)
    valid = set(table.sequences())
    model = DocidSeq2Seq(ModelConfig(n_codes=7, backbone=tiny_bert, decoder_heads=2, decoder_ff=64)).eval()
    memory, mask = model.encode_texts([f"query {i}" for i in range(5)])
    for beam, prefix_beam in ((1, None), (3, None), (20, None), (100, None), (20, 2), (100, 5)):
        nodes, scores = beam_search(model, trie, memory, mask, beam, prefix_beam=prefix_beam)
        for n, s in zip(nodes.reshape(-1).tolist(), scores.reshape(-1).tolist(), strict=True):
            if s > float("-inf"):
                assert n in trie.leaf_docs
                assert table.sequence(trie.leaf_docs[n][0]) in valid


def test_trie_masks_and_advance():
    table = DocIdTable(["a", "b", "c", "d"], [[0, 1], [0, 2], [1], [0, 1, 1]], 3)
    trie = PrefixTree(table)
    assert trie.needs_eos  # [0, 1] is a proper prefix of [0, 1, 1]
    root = trie.allowed_mask(torch.tensor([0]))[0]
    assert root.tolist() == [True, True, False, False]
    node, ok = trie.advance(torch.tensor([0]), torch.tensor([0]))
    assert ok.item()
    assert trie.allowed_mask(node)[0].tolist() == [False, True, True, False]
    _, ok = trie.advance(torch.tensor([0]), torch.tensor([2]))
    assert not ok.item()
    for i in range(4):
        assert trie.contains(trie.full_sequence(i))
    assert not trie.contains((0,))
    assert not trie.contains((2,))


def test_collisions_come_back_together(tiny_bert):
    from genir.search.generative import GenerativeSearcher

    table = DocIdTable(["a", "b", "c"], [[0, 1], [0, 1], [1, 0]], 2)
    assert table.stats()["collision_rate"] == pytest.approx(2 / 3)
    model = DocidSeq2Seq(ModelConfig(n_codes=2, backbone=tiny_bert, decoder_heads=2, decoder_ff=64))
    hits = GenerativeSearcher(model, table, beam=10).search("anything", k=10)
    assert sorted(h.doc_id for h in hits) == ["a", "b", "c"]
    by_doc = {h.doc_id: h.score for h in hits}
    assert by_doc["a"] == by_doc["b"]
    reverse = GenerativeSearcher(model, table, beam=10, tie_break=lambda q, docs: docs[::-1]).search("x", 10)
    ab = [h.doc_id for h in reverse if h.doc_id in "ab"]
    assert ab == ["b", "a"]


def test_schemes():
    ids = ["10", "2", "33", "7"]
    assert atomic_docids(ids).sequences() == [(0,), (1,), (2,), (3,)]
    naive = naive_docids(ids)
    assert naive.meta["alphabet"] == "01237"
    assert naive.sequence(0) == (1, 0)
    assert PrefixTree(naive).needs_eos is False
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(300, 8)).astype(np.float32)
    sem = semantic_docids([str(i) for i in range(300)], emb, c=5)
    assert sem.stats()["collision_rate"] == 0.0
    assert sem.codes.max() < 5
    # leaf size <= c: no docid prefix is shared by more than c documents at the last level
    from collections import Counter

    parents = Counter(s[:-1] for s in sem.sequences())
    assert max(parents.values()) <= 5
    # identical embeddings must still terminate with unique docids
    same = semantic_docids([str(i) for i in range(50)], np.zeros((50, 4), np.float32), c=4)
    assert same.stats()["distinct_docids"] == 50


def test_another_corpus_is_placed_in_the_trained_tree_with_room_in_every_leaf():
    """Transfer of semantic docids (semantic_reindex): a new document goes down the trained tree to the child
    whose centroid is nearest, takes its leaf's first free position (the trained documents are gone), and a
    full leaf sends it to the nearest leaf with room; a corpus larger than the tree is refused."""
    from genir.docids.schemes import semantic_reindex

    # two top clusters: [0, *] near x (leaves [0, 0] near x+0.25y and [0, 1] near x-y), [1] near y
    trained = DocIdTable(["a", "b", "c", "d", "e"], [[0, 0, 0], [0, 0, 1], [0, 1, 0], [1, 0], [1, 1]], 2)
    emb = np.array([[1, 0.2], [1, 0.3], [1, -1], [0.3, 1], [0.5, 1]], np.float32)
    new = np.array([[1, 0.25], [1, 0.2], [1, 0.3], [0.4, 1], [1, -0.9]], np.float32)
    codes, moved = semantic_reindex(trained, emb, new)
    # the first two fill leaf [0, 0] (c = 2); the third belongs there too: the nearest leaf centroid with
    # room is [1] (cos 0.58), not [0, 1] (0.51), the first in the tree's order; then [1]'s and [0, 1]'s own
    assert codes == [[0, 0, 0], [0, 0, 1], [1, 0], [1, 1], [0, 1, 0]] and moved == 1
    with pytest.raises(ValueError, match="holds 6 docids"):
        semantic_reindex(trained, emb, np.ones((7, 2), np.float32))


def test_cross_attention_without_projecting_the_memory_is_the_same_attention():
    """Teacher forcing attends to the encoder states unprojected (the key/value maps moved to the decoder's
    side): the same outputs and gradients as projecting them, and the projection is skipped."""
    from unittest.mock import patch

    from genir.models.decoder import CodeDecoder, DecoderLayer

    torch.manual_seed(0)
    layer = DecoderLayer(d_model=32, n_heads=4, d_ff=64, d_memory=24, dropout=0.0)
    x = torch.randn(3, 2, 32, requires_grad=True)
    memory = torch.randn(3, 7, 24, requires_grad=True)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[0, 5:], mask[2, 1:] = False, False  # padded states must not count
    mask4 = mask[:, None, None, :]
    mk, mv = layer.memory_kv(memory)
    projected = layer.cross(x, mk, mv, mask4, 3)
    unprojected = layer.cross_unprojected(x, memory, mask4)
    assert torch.allclose(unprojected, projected, atol=1e-5)
    weight = torch.randn_like(projected)
    grads = [torch.autograd.grad((out * weight).sum(), [x, memory, layer.cross_kv.weight, layer.cross_kv.bias,
                                                        layer.cross_q.weight])
             for out in (projected, unprojected)]
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    # a short docid is decoded without projecting the memory; a long one (T x H >= d) projects it
    decoder = CodeDecoder(32, 2, 4, 64, 24, max_length=16, dropout=0.0).eval()
    with torch.no_grad():
        with patch.object(DecoderLayer, "memory_kv", side_effect=AssertionError("memory projected")):
            short = decoder(torch.ones(3, 3, 32), memory, mask)
        calls = []
        original = DecoderLayer.memory_kv
        with patch.object(DecoderLayer, "memory_kv", autospec=True,
                          side_effect=lambda self, m: calls.append(1) or original(self, m)):
            decoder(torch.ones(3, 8, 32), memory, mask)
        assert calls == [1, 1]
        # the short path equals the projected one through the whole stack
        for lay in decoder.layers:
            lay.unprojected_is_cheaper = lambda positions: False
        assert torch.allclose(decoder(torch.ones(3, 3, 32), memory, mask), short, atol=1e-5)


def test_stepped_decoding_of_one_row_per_memory_does_not_project_the_memory():
    """GLEN's hidden feed decodes its n identifier steps one at a time, one row per text (no beams share
    the memory): ``start(steps=n)`` keeps the states unprojected, and every step's output and gradient
    equal the projected decoding's."""
    from unittest.mock import patch

    from genir.models.decoder import CodeDecoder, DecoderLayer

    torch.manual_seed(0)
    decoder = CodeDecoder(32, 2, 4, 64, 24, max_length=16, dropout=0.0)
    memory = torch.randn(3, 7, 24, requires_grad=True)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[0, 5:], mask[2, 1:] = False, False
    inputs = torch.randn(3, 3, 32)

    def decode(state):
        outs = []
        for t in range(3):
            h, state = decoder.step(state, inputs[:, t] + (outs[-1] if outs else 0))
            outs.append(h)
        return torch.stack(outs, 1)

    projected = decode(decoder.start(memory, mask))
    with patch.object(DecoderLayer, "memory_kv", side_effect=AssertionError("memory projected")):
        unprojected = decode(decoder.start(memory, mask, steps=3))
    assert torch.allclose(unprojected, projected, atol=1e-5)
    weight = torch.randn_like(projected)
    grads = [torch.autograd.grad((out * weight).sum(), [memory, *decoder.parameters()], allow_unused=True)
             for out in (projected, unprojected)]
    for a, b in zip(*grads, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, atol=1e-5)
    # too many steps for the unprojected form to pay: projected as before
    calls = []
    original = DecoderLayer.memory_kv
    with patch.object(DecoderLayer, "memory_kv", autospec=True,
                      side_effect=lambda self, m: calls.append(1) or original(self, m)):
        decoder.start(memory, mask, steps=8)
    assert calls == [1, 1]


def test_reordering_an_unprojected_state_moves_its_memory_rows_with_the_decoder_rows():
    """``reorder`` on a state that keeps the memory unprojected (one memory row per decoder row) must move the
    memory and its mask with the rows: the next step equals decoding the permuted texts from the start."""
    from genir.models.decoder import CodeDecoder

    torch.manual_seed(0)
    decoder = CodeDecoder(32, 2, 4, 64, 24, max_length=16, dropout=0.0).eval()
    memory = torch.randn(3, 7, 24)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[0, 5:], mask[2, 1:] = False, False
    inputs = torch.randn(3, 2, 32)
    perm = torch.tensor([2, 0, 1])
    with torch.no_grad():
        state = decoder.start(memory, mask, steps=2)
        _, state = decoder.step(state, inputs[:, 0])
        moved, _ = decoder.step(CodeDecoder.reorder(state, perm), inputs[perm, 1])
        state = decoder.start(memory[perm], mask[perm], steps=2)
        _, state = decoder.step(state, inputs[perm, 0])
        fresh, _ = decoder.step(state, inputs[perm, 1])
    assert torch.allclose(moved, fresh, atol=1e-5)
