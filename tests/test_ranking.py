"""Rank-aware training (genir.training.ranking, genir.methods.ranking): prefix scores against a hand
computation, and the loss's sign: training on it puts the teacher's best document first."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genir.docids import DocIdTable, PrefixTree
from genir.training.ranking import allowed_along, level_weights, prefix_margin_mse, prefix_scores


def _tree() -> PrefixTree:
    # docids (0, 0), (0, 1), (1, 0) over codes {0, 1}: the decoder has 3 outputs (2 codes + end-of-docid)
    return PrefixTree(DocIdTable(["a", "b", "c"], np.array([[0, 0], [0, 1], [1, 0]]), 2, "test"))


def _logsumexp(xs):
    return math.log(sum(math.exp(x) for x in xs))


def test_prefix_scores_are_summed_log_probabilities_by_hand():
    trie = _tree()
    assert trie.n_out == 3 and not trie.needs_eos
    step1, step2 = [1.0, 2.0, 0.5], [0.3, -1.0, 2.0]  # the same logits at every row, for clarity
    targets = torch.tensor([[0, 0], [0, 1], [1, 0]])
    logits = torch.tensor([step1, step2]).expand(3, 2, 3)
    got = prefix_scores(logits, targets)
    for row, (c1, c2) in enumerate(targets.tolist()):
        first = step1[c1] - _logsumexp(step1)  # log-softmax over every output, as the beam search scores
        second = step2[c2] - _logsumexp(step2)
        assert got[row, 0].item() == pytest.approx(first, abs=1e-6)
        assert got[row, 1].item() == pytest.approx(first + second, abs=1e-6)

    allowed = allowed_along(trie, targets)
    # the root allows codes 0 and 1 (not the end code); under prefix 0 both codes; under prefix 1 only 0
    assert allowed[:, 0].tolist() == [[True, True, False]] * 3
    assert allowed[0, 1].tolist() == [True, True, False] and allowed[2, 1].tolist() == [True, False, False]
    got = prefix_scores(logits, targets, allowed)
    first = {c: step1[c] - _logsumexp(step1[:2]) for c in (0, 1)}
    assert got[0, 1].item() == pytest.approx(first[0] + step2[0] - _logsumexp(step2[:2]), abs=1e-6)
    assert got[1, 1].item() == pytest.approx(first[0] + step2[1] - _logsumexp(step2[:2]), abs=1e-6)
    assert got[2, 1].item() == pytest.approx(first[1] + 0.0, abs=1e-6)  # the only child: log 1

    padded = torch.tensor([[1, -100]])  # a docid one code shorter keeps its full score at the last level
    s = prefix_scores(torch.tensor([[step1, step2]]), padded)
    assert s[0, 1].item() == pytest.approx(s[0, 0].item())


def test_margin_mse_is_zero_at_the_teachers_margins_and_weights_levels():
    scores = torch.tensor([[[-1.0, -2.0], [-3.0, -5.0]]])  # one text: positive, one negative; two levels
    teacher = torch.tensor([[0.9, 0.6]])  # margin 0.3
    valid = torch.ones(1, 2, dtype=torch.bool)
    w = level_weights(2, "uniform")
    # student margins 2 and 3 at the two levels; the target 0.3 x scale 10 = 3
    assert prefix_margin_mse(scores, teacher, valid, w, 10.0).item() == pytest.approx(0.5 * 1.0 + 0.5 * 0.0)
    assert prefix_margin_mse(scores, teacher, valid, level_weights(2, "last"), 10.0).item() == pytest.approx(0.0)
    valid[0, 1] = False  # no valid negative: nothing to learn
    assert prefix_margin_mse(scores, teacher, valid, w, 10.0).item() == 0.0


@pytest.mark.parametrize("constrained", [False, True])
def test_training_on_the_rank_loss_ranks_the_teachers_best_document_first(tiny_bert, constrained):
    """A fresh model, trained a few steps on the rank-aware loss alone (generation weight 0) for one text whose
    teacher prefers document c over a and b, scores c's docid highest; with the margin's sign flipped the
    same training would put c last."""
    from genir.methods.ranking import RankAwareObjective, RankCollator, RankSettings
    from genir.models import DocidSeq2Seq, ModelConfig

    torch.manual_seed(0)
    trie = _tree()
    model = DocidSeq2Seq(ModelConfig(n_codes=2, backbone=tiny_bert, decoder_heads=2, decoder_ff=32, decoder_dim=32,
                                     decoder_layers=1, dropout=0.0))
    memory = torch.randn(1, 4, model.d_model)
    targets = [trie.full_sequence(i) for i in range(3)]

    def base(items):
        return {"memory": memory.expand(len(items), -1, -1), "mask": torch.ones(len(items), 4, dtype=torch.bool),
                "targets": torch.tensor([targets[d] for _, d in items])}

    teacher = {0: {0: 0.2, 1: 0.5, 2: 0.9}}
    collate = RankCollator(base, targets, teacher, {0: {2}}, negatives=2)
    zero_ce = lambda m, b: (torch.zeros((), requires_grad=True), {})  # noqa: E731 - the rank term alone
    objective = RankAwareObjective(zero_ce, trie, 1.0, RankSettings(scale=10.0, constrained=constrained))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss, logs = objective(model, collate([(0, 2)]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    # a and b share their first code, so at level 1 one margin serves the teacher's 0.7 and 0.4 (x 10): the
    # loss cannot go below w_1 x 1.5^2 = 1.125 (from 25 or so at the start)
    assert 1.125 - 1e-3 < logs["rank"] < 2.0
    with torch.no_grad():
        all_targets = torch.tensor(targets)
        logits = model(memory.expand(3, -1, -1), torch.ones(3, 4, dtype=torch.bool), all_targets)
        full = prefix_scores(logits, all_targets)[:, -1]
    assert int(full.argmax()) == 2, full
    assert full[2] - full[0] > full[2] - full[1] > 0  # a (teacher 0.2) further below c than b (0.5)
