"""GLEN: lexical identifiers, keyword IDs, the refinement losses, negatives and collision ranking."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genir.docids import DocIdTable
from genir.methods.glen.docids import identifier_words, keyword_docids
from genir.methods.glen.model import LexicalSeq2Seq
from genir.methods.glen.search import LexicalSearcher, collision_order
from genir.methods.glen.training import (
    GlenConfig,
    PrefixNegatives,
    identifier_distance,
    relevance,
    soft_identifier,
    temperature,
)
from genir.models import DocidSeq2Seq, ModelConfig


@pytest.fixture(scope="module")
def model(tiny_bert) -> LexicalSeq2Seq:
    torch.manual_seed(0)
    return LexicalSeq2Seq(ModelConfig(n_codes=0, backbone=tiny_bert, max_docid_length=3, dropout=0.0)).eval()


def _memory(model, texts):
    with torch.no_grad():
        return model.encode_texts(texts, 16)


def test_eq2_eq3_identifiers_are_vocabulary_argmax_fed_by_hidden_states(model, tiny_bert):
    mem, mask = _memory(model, ["protein folding in cells", "vitamin d"])
    hidden, tokens = model.hidden_states(mem, mask)
    e = model.word_embeddings
    assert model.config.n_codes == e.shape[0]
    logits = model.vocab_logits(hidden)
    assert torch.allclose(logits, hidden @ e.T, atol=1e-5)  # Eq. 3
    assert torch.equal(tokens, logits.argmax(-1))  # Eq. 2
    # the decoder input of step t is d_{t-1} itself (not e_{z_{t-1}})
    state = model.decoder.start(mem, mask)
    h1, state = model.decoder.step(state, model.code_embed.weight[model.bos].expand(2, -1))
    h2, _ = model.decoder.step(state, h1)
    assert torch.allclose(h2, hidden[:, 1], atol=1e-5)
    token_fed = LexicalSeq2Seq(ModelConfig(n_codes=0, backbone=tiny_bert, max_docid_length=3, dropout=0.0,
                                           extra={"feed": "token"}))
    token_fed.load_state_dict(model.state_dict())
    h_tok, _ = token_fed.eval().hidden_states(mem, mask)
    assert torch.allclose(h_tok[:, 0], hidden[:, 0], atol=1e-5) and not torch.allclose(h_tok[:, 1], hidden[:, 1])


@pytest.mark.parametrize("shared_steps", [True, False])
def test_search_scores_are_exact_log_probabilities_over_the_vocabulary(model, shared_steps):
    # shared: the hidden feed decodes once per query; per-beam: every beam row decodes (the reference).
    # Both must give exact log P(z | q) for every query of a batch.
    rng = np.random.default_rng(0)
    codes = rng.integers(1000, 1040, size=(30, 3))
    table = DocIdTable([f"d{i}" for i in range(30)], codes, model.config.n_codes, "glen")
    searcher = LexicalSearcher(model, table, rng.normal(size=(30, 3)), beam=40, shared_steps=shared_steps)
    queries = {"q": "a query about proteins", "r": "vitamin d and bone density in older adults"}
    results = searcher.batch_search(queries, k=30)
    for qid, text in queries.items():
        mem, mask = _memory(model, [text])
        with torch.no_grad():
            hidden, _ = model.hidden_states(mem, mask)
        logp = F.log_softmax(model.vocab_logits(hidden)[0], -1)  # P(z | q) = prod_t softmax over all of V
        brute = {f"d{i}": float(sum(logp[t, codes[i, t]] for t in range(3))) for i in range(30)}
        got = {h.doc_id: h.score for h in results[qid]}
        assert len(got) == 30
        for d, s in got.items():
            assert s == pytest.approx(brute[d], abs=1e-4)
        ranked = [h.doc_id for h in results[qid]]
        assert [brute[d] for d in ranked] == sorted(brute.values(), reverse=True)


def test_keyword_ids_are_top_bm25_tokens(model):
    tok = model.tokenizer
    texts = ["cells cells cells protein", "protein vitamin vitamin", "cells gene"]
    table = keyword_docids(["a", "b", "c"], texts, tok, n=2, k1=100.0, b=0.75)
    vocab = {w: tok.convert_tokens_to_ids(w) for w in ("cells", "protein", "vitamin", "gene")}
    # doc a: tf(cells)=3, df 2; tf(protein)=1, df 2 -> cells first; doc c: gene (df 1) beats cells (df 2)
    assert table.codes[0].tolist() == [vocab["cells"], vocab["protein"]]
    assert table.codes[1, 0] == vocab["vitamin"] and table.codes[2, 0] == vocab["gene"]
    assert identifier_words(tok, table.codes[1]) == "vitamin-protein"


def test_refinement_pieces_eq5_to_eq7():
    assert temperature(0) == 1.0 and temperature(2.5) == pytest.approx(math.exp(-2.5))
    assert temperature(50) == 1e-5
    torch.manual_seed(0)
    e = torch.randn(10, 4)
    logits = torch.randn(2, 3, 10)
    r = soft_identifier(logits, e, 1e-5)  # tau -> 0: r_t = e_{argmax}
    assert torch.allclose(r, e[logits.argmax(-1)], atol=1e-4)
    q = torch.randn(5, 3, 4)
    rel = relevance(q, r)
    assert rel.shape == (5, 2)
    assert rel[1, 0].item() == pytest.approx(sum(float(q[1, t] @ r[0, t]) for t in range(3)), rel=1e-5)
    w = torch.tensor([[1.0, 2.0, 3.0]])
    assert identifier_distance(w, 2 * w).item() == pytest.approx(0.0, abs=1e-6)
    assert identifier_distance(w, -w).item() == pytest.approx(2.0)


@pytest.mark.parametrize("soft_scale", [1.0, 0.05])
def test_eq8_objective_matches_its_parts(model, soft_scale):
    # L = L_pair + lambda_point * (CE(q -> z+) + lambda_dist * dist), at epoch 0 (tau = 1); soft_scale
    # multiplies d_t . E^T inside Eq. 6's softmax only
    from genir.methods.glen.training import GlenConfig, GlenRefineObjective

    cfg = GlenConfig(negative_mode="random", soft_scale=soft_scale)
    objective = GlenRefineObjective(cfg, 10, None, None, {})
    q_mem, q_mask = _memory(model, ["protein folding", "vitamin d and bones"])
    d_mem, d_mask = _memory(model, ["proteins fold", "a negative", "vitamin d", "another negative"])
    batch = {"q_memory": q_mem, "q_mask": q_mask, "d_memory": d_mem, "d_mask": d_mask, "group": torch.tensor(2)}
    with torch.no_grad():
        loss, logs = objective(model, batch)
        q_h, _ = model.hidden_states(q_mem, q_mask)
        d_h, d_tok = model.hidden_states(d_mem, d_mask)
        e = model.word_embeddings
        rel = relevance(q_h, soft_identifier(model.vocab_logits(d_h) * soft_scale, e, 1.0))
        target = torch.tensor([0, 2])
        pair = F.cross_entropy(rel, target)
        z_pos = d_tok[target]
        q_logits = model.vocab_logits(q_h)
        ce = sum(F.cross_entropy(q_logits[:, t], z_pos[:, t]) for t in range(3))
        w_q = q_logits.gather(-1, z_pos[..., None])[..., 0]
        w_d = model.vocab_logits(d_h)[target].gather(-1, z_pos[..., None])[..., 0]
        expected = pair + 0.5 * (ce + 0.5 * identifier_distance(w_q, w_d).mean())
    assert logs["pair"] == pytest.approx(float(pair), rel=1e-5)
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)


def test_prefix_aware_negatives_widen_the_prefix_until_full():
    ids = {0: (1, 2, 3), 1: (1, 2, 3), 2: (1, 2, 4), 3: (1, 5, 5), 4: (9, 9, 9), 5: (9, 8, 8)}
    neg = PrefixNegatives(list(ids), n_neg=3, seed=0)
    neg.refresh(ids)
    out = neg.sample(0, exclude=set())
    assert out[:2] == [1, 2] and out[2] == 3  # same id, then same 2-prefix, then same 1-prefix
    assert 0 not in neg.sample(1, exclude={0})
    rand = PrefixNegatives(list(ids), n_neg=3, mode="random", seed=0)
    rand.refresh(ids)
    assert len(set(rand.sample(0, set()))) == 3 and 0 not in rand.sample(0, set())
    with pytest.raises(ValueError):
        GlenConfig(negative_mode="hard")


def test_collision_ranking_eq9_orders_by_cosine():
    # cosine and dot product disagree here: a long vector off the query's direction beats an aligned short one
    # by dot product (10 > 3 > 1), not by cosine (1 > 0.71 > 0.58)
    w_q = np.array([1.0, 0.0, 0.0])
    w_docs = np.array([[10.0, 10.0, 0.0], [1.0, 0.0, 0.0], [3.0, 3.0, 3.0]])
    assert collision_order(w_q, w_docs).tolist() == [1, 0, 2]


def test_lexical_model_saves_and_loads(model, tmp_path):
    model.save(tmp_path / "glen")
    loaded = DocidSeq2Seq.load(tmp_path / "glen")
    assert isinstance(loaded, LexicalSeq2Seq) and loaded.feed == "hidden"
    mem, mask = _memory(model, ["same text"])
    assert torch.equal(loaded.assign_ids(mem, mask)[0], model.assign_ids(mem, mask)[0])


@pytest.mark.parametrize("shared_steps", [True, False])
def test_searcher_ranks_colliding_documents_by_eq9(model, shared_steps):
    rng = np.random.default_rng(1)
    codes = np.array([[1000, 1001, 1002]] * 4 + [[1003, 1004, 1005]] * 2)  # a 4-document collision
    doc_logits = rng.normal(size=(6, 3))
    table = DocIdTable([f"d{i}" for i in range(6)], codes, model.config.n_codes, "glen")
    text = "a query about proteins"
    mem, mask = _memory(model, [text])
    with torch.no_grad():
        w_q = model.identifier_logits(mem, mask, torch.as_tensor(codes[:1]))[0].numpy()
    cos = doc_logits[:4] @ w_q / (np.linalg.norm(doc_logits[:4], axis=1) * np.linalg.norm(w_q))
    expected = [f"d{i}" for i in np.argsort(-cos)]
    searcher = LexicalSearcher(model, table, doc_logits, beam=10, shared_steps=shared_steps)
    hits = searcher.batch_search({"q": text}, k=6)["q"]
    first = [h.doc_id for h in hits if h.doc_id in expected]
    assert first == expected
    assert len({h.score for h in hits if h.doc_id in expected}) == 1  # one identifier, one P(z | q)
    shuffled = LexicalSearcher(model, table, doc_logits, beam=10, tie_break="random", seed=3)

    def order(s, queries=None):
        hits = s.batch_search(queries or {"q": text}, k=6)["q"]
        return tuple(h.doc_id for h in hits if h.doc_id in expected)

    # random order: fixed by the seed and the query, so a query ranks the same alone or in a batch
    assert order(shuffled) == order(shuffled, {"other": "an unrelated query", "q": text})
    orders = {order(shuffled.with_tie_break("random", seed)) for seed in range(6)}
    assert len(orders) > 1 and all(sorted(o) == sorted(expected) for o in orders)
    assert order(shuffled.with_tie_break("cosine")) == tuple(expected)
    assert shuffled.tie_mode == "random"  # with_tie_break returns a copy; the original is unchanged


def test_z_plus_and_w_d_are_taken_without_dropout(tiny_bert):
    """Eq. 7's target identifier z+ and its logits w^{d+} are the model's own (dropout off), even while the
    model trains with dropout; w^{d+} keeps its gradient."""
    from genir.methods.glen.training import positive_identifiers

    torch.manual_seed(0)
    noisy = LexicalSeq2Seq(ModelConfig(n_codes=0, backbone=tiny_bert, max_docid_length=3, dropout=0.5))
    d_mem, d_mask = _memory(noisy.eval(), ["proteins fold", "a negative", "vitamin d", "another negative"])
    batch = {"d_memory": d_mem, "d_mask": d_mask}
    target = torch.tensor([0, 2])
    with torch.no_grad():
        h, z_clean = noisy.hidden_states(d_mem[target], d_mask[target])
        w_clean = noisy.vocab_logits(h).gather(-1, z_clean[..., None])[..., 0]
    noisy.train()
    for _ in range(3):  # dropout at 0.5 would change them from call to call
        z_pos, w_d = positive_identifiers(noisy, batch, target)
        assert torch.equal(z_pos, z_clean) and torch.allclose(w_d, w_clean, atol=1e-5)
    assert w_d.requires_grad and noisy.training  # the gradient flows; the model is left training


def _refine_batch(model, pairs: list[tuple[int, int]]):
    """Phase 2's batch for queries 0 and 1 (positives 2 and 4, negatives 3 and 5) over cached states of six
    texts: (batch, inputs, negatives, query states q_t, document states d_t of texts 2-5)."""
    from genir.methods.glen.training import GlenPairs, PrefixNegatives

    texts = ["protein folding", "vitamin d and bones", "proteins fold", "a negative", "vitamin d", "another"]
    mem, mask = _memory(model, texts)
    inputs = type("Cached", (), {"features": staticmethod(
        lambda idx, name: {f"{name}memory": mem[idx], f"{name}mask": mask[idx]})})()
    negatives = PrefixNegatives([2, 3, 4, 5], 1, "random", seed=0)
    negatives.sample = lambda positive, exclude: [{2: 3, 4: 5}[positive]]
    batch = GlenPairs(pairs, inputs, {2: 2, 3: 3, 4: 4, 5: 5}, negatives).collate([(0, 2), (1, 4)])
    with torch.no_grad():
        q_h, _ = model.hidden_states(mem[[0, 1]], mask[[0, 1]])
        d_h, _ = model.hidden_states(mem[[2, 3, 4, 5]], mask[[2, 3, 4, 5]])
    return batch, inputs, negatives, q_h, d_h


def test_in_batch_false_negatives_are_masked(model):
    """A document relevant to the query (here query 0's second positive, which is query 1's positive) is not
    counted as its negative in Eq. 5's softmax; the collator marks it."""
    from genir.methods.glen.training import GlenConfig, GlenRefineObjective

    batch, inputs, negatives, q_h, d_h = _refine_batch(model, [(0, 2), (0, 4), (1, 4)])
    assert batch["relevant"].tolist() == [[True, False, True, False], [False, False, True, False]]
    objective = GlenRefineObjective(GlenConfig(negative_mode="random"), 10, negatives, inputs, {})
    with torch.no_grad():
        _, logs = objective(model, batch)
        rel = relevance(q_h, soft_identifier(model.vocab_logits(d_h), model.word_embeddings, 1.0))
        unmasked = F.cross_entropy(rel, torch.tensor([0, 2]))
        rel[0, 2] = float("-inf")
        masked = F.cross_entropy(rel, torch.tensor([0, 2]))
    assert logs["pair"] == pytest.approx(float(masked), rel=1e-5) and float(masked) != pytest.approx(float(unmasked))


def test_the_temperature_floor_and_soft_scale_reach_the_pairwise_loss(model):
    """glen.tau_floor bounds the annealed tau from below (1: no annealing) and glen.soft_scale multiplies the
    documents' logits inside Eq. 6: three epochs in, the pairwise loss is the one computed by hand with them."""
    from genir.methods.glen.training import GlenConfig, GlenRefineObjective

    assert temperature(3.0, floor=1.0) == 1.0 and temperature(3.0, floor=0.01) == pytest.approx(math.exp(-3))
    batch, inputs, negatives, q_h, d_h = _refine_batch(model, [(0, 2), (1, 4)])
    pairs = {}
    for floor, scale in ((1e-5, 1.0), (1.0, 1.0), (1.0, 0.05)):
        objective = GlenRefineObjective(GlenConfig(negative_mode="random", tau_floor=floor, soft_scale=scale), 10,
                                        negatives, inputs, {})
        objective.calls = 30  # epoch 3: exp(-3) = 0.0498 without the floor
        with torch.no_grad():
            _, logs = objective(model, batch)
            tau = max(floor, math.exp(-3))
            rel = relevance(q_h, soft_identifier(model.vocab_logits(d_h) * scale, model.word_embeddings, tau))
        assert logs["tau"] == pytest.approx(tau)
        assert logs["pair"] == pytest.approx(float(F.cross_entropy(rel, torch.tensor([0, 2]))), rel=1e-5)
        pairs[floor, scale] = logs["pair"]
    assert len({round(v, 6) for v in pairs.values()}) == 3  # each setting changes the loss


def test_the_temperature_resumes_where_it_was(model):
    """tau follows the step count, which a checkpoint carries: a resumed phase 2 does not restart at tau = 1."""
    from genir.methods.glen.training import GlenConfig, GlenRefineObjective, temperature

    first = GlenRefineObjective(GlenConfig(negative_mode="random"), 4, None, None, {})
    first.calls = 7
    resumed = GlenRefineObjective(GlenConfig(negative_mode="random"), 4, None, None, {})
    resumed.load_checkpoint_state(first.checkpoint_state())
    assert resumed.calls == 7 and temperature(resumed.calls / 4) == pytest.approx(math.exp(-7 / 4))


def test_phase1_keywords_come_from_the_tokens_the_model_reads(model, shared_datasets, tmp_path_factory):
    """Eq. 4's targets are taken from the document's leading span cut at model.doc_max_length tokens (what the
    encoder reads), not from a longer text: no target keyword lies outside the model's input."""
    from genir.methods import make_settings
    from genir.methods.glen.method import phase1_keywords
    from genir.workspace import Workspace
    from tests.test_pipeline import _slice

    data = _slice(tmp_path_factory, shared_datasets, "scifact", {"train": 5, "test": 5}, 60)
    ws = Workspace(make_settings({"data": {"dataset": str(data)}, "model": {"doc_max_length": 24},
                                  "out": str(tmp_path_factory.mktemp("kw"))}))
    tok = model.tokenizer
    table = phase1_keywords(ws, tok, 3)
    outside = 0
    for i, text in enumerate(ws.lead_texts(ws.docs)):
        read = set(tok(text, truncation=True, max_length=24)["input_ids"])  # as the encoder reads it
        outside += any(int(c) not in read for c in table.codes[i] if c >= 0)
    assert outside == 0
    assert len(ws.lead_texts(ws.docs)[0].split()) > 24  # the span is longer than what is read: the cut matters
