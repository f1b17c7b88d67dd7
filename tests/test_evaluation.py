"""Metrics through ir_measures against hand-computed values; run files round-trip; the held-out curves bench."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from genir.data import DataError
from genir.evaluation import evaluate, per_query, read_run, write_run
from genir.search.base import Hit


def test_metrics_by_hand():
    qrels = {"q1": {"a": 1, "b": 1}, "q2": {"c": 2, "d": 1}, "q3": {"e": 1}}
    results = {"q1": [Hit("x", 9.0), Hit("a", 8.0)], "q2": [Hit("c", 1.0), Hit("d", 0.5)]}  # q3 missing
    pq = per_query(results, qrels)
    assert pq["q1"]["R@1"] == 0 and pq["q1"]["R@10"] == 0.5 and pq["q1"]["MRR@10"] == 0.5
    assert pq["q2"]["nDCG@10"] == pytest.approx(1.0)
    assert pq["q3"] == dict.fromkeys(pq["q3"], 0.0)  # a query the run misses counts as 0
    idcg = 1 + 1 / math.log2(3)
    assert pq["q1"]["nDCG@10"] == pytest.approx((1 / math.log2(3)) / idcg)
    table = evaluate(results, qrels, subsets={"seen": ["q1"], "unseen": ["q2", "q3"]})
    assert table["full"]["n"] == 3
    assert table["full"]["MRR@10"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert table["unseen"]["R@10"] == pytest.approx(0.5)


def test_graded_ndcg_uses_the_linear_gain_of_trec_eval():
    """nDCG's gain is the grade itself (trec_eval / pytrec_eval), not 2^grade - 1: a graded, imperfect
    ranking tells the two apart (linear 0.760, exponential 0.689)."""
    qrels = {"q": {"d1": 2, "d2": 1, "d3": 0}}
    results = {"q": [Hit("d2", 3.0), Hit("d3", 2.0), Hit("d1", 1.0)]}
    dcg = 1 / math.log2(2) + 0 + 2 / math.log2(4)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    value = per_query(results, qrels)["q"]["nDCG@10"]
    assert value == pytest.approx(dcg / idcg) and value == pytest.approx(0.7602, abs=1e-4)
    exponential = (1 + 3 / math.log2(4)) / (3 + 1 / math.log2(3))
    assert abs(value - exponential) > 0.05


def test_rank_order_decides_ties():
    qrels = {"q": {"b": 1}}
    tied = {"q": [Hit("a", 1.0), Hit("b", 1.0)]}
    assert per_query(tied, qrels)["q"]["MRR@10"] == 0.5  # our order, not the doc-id tie-break of trec_eval


def test_run_file_round_trip(tmp_path):
    results = {"q1": [Hit("d3", 2.5), Hit("d1", 2.5), Hit("d2", -1.0)], "q2": [Hit("d9", 0.1)]}
    path = tmp_path / "r.trec"
    write_run(results, path, tag="t")
    back = read_run(path)
    assert {q: [h.doc_id for h in hits] for q, hits in back.items()} == {"q1": ["d3", "d1", "d2"], "q2": ["d9"]}
    assert back["q1"][0].score == 2.5 and 2.49999 < back["q1"][1].score < 2.5  # a tie, lowered by one float
    path.write_text("q1 Q0 d1 1 2.0\n")
    with pytest.raises(DataError, match="r.trec:1: expected 6 columns"):
        read_run(path)


def test_a_run_file_rescored_by_pytrec_eval_gives_the_reports_figures(tmp_path):
    """Documents sharing a docid come back tied; trec_eval would re-order them by document id. The run file's
    scores decrease strictly in the searcher's order, so pytrec_eval, reading the file on its own, agrees
    with genir's evaluation of the same ranking."""
    import pytrec_eval

    qrels = {"q1": {"a": 1, "z": 2}, "q2": {"m": 1}}
    # the searcher ranks z before a, both tied; trec_eval's tie-break (by id) would put a first
    results = {"q1": [Hit("z", 3.0), Hit("a", 3.0), Hit("b", 3.0), Hit("c", 1.0)],
               "q2": [Hit("n", 5.0), Hit("m", 5.0), Hit("k", 5.0)]}
    path = tmp_path / "run.trec"
    write_run(results, path)
    with open(path) as f:
        run = pytrec_eval.parse_run(f)
    measures = {"ndcg_cut_10", "recip_rank"}
    by_pytrec = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    ours = per_query(results, qrels)
    for q in qrels:
        assert by_pytrec[q]["ndcg_cut_10"] == pytest.approx(ours[q]["nDCG@10"], abs=1e-12)
        assert by_pytrec[q]["recip_rank"] == pytest.approx(ours[q]["MRR@100"], abs=1e-12)
    assert by_pytrec["q2"]["recip_rank"] == 0.5  # m second, as the searcher ranked it (by id it would be first)


def test_fusion_by_hand():
    """RRF: sum of w / (60 + rank); interpolation: w times min-max normalised scores; the union of both."""
    from genir.search.fusion import fuse

    a = {"q": [Hit("x", 9.0), Hit("y", 5.0), Hit("z", 1.0)]}
    b = {"q": [Hit("z", 0.9), Hit("w", 0.5)]}
    rrf = fuse(a, b, weight=0.5)["q"]
    expected = {"x": 0.5 / 61, "y": 0.5 / 62, "z": 0.5 / 63 + 0.5 / 61, "w": 0.5 / 62}
    assert [h.doc_id for h in rrf] == sorted(expected, key=lambda d: -expected[d])
    assert {h.doc_id: h.score for h in rrf} == pytest.approx(expected)
    inter = {h.doc_id: h.score for h in fuse(a, b, weight=0.25, mode="interpolate")["q"]}
    assert inter == pytest.approx({"x": 0.25, "y": 0.25 * 0.5, "z": 0.75, "w": 0.0})
    assert [h.doc_id for h in fuse(a, b, weight=1.0)["q"]][:3] == ["x", "y", "z"]  # all weight on the first
    assert len(fuse(a, b, k=2)["q"]) == 2
    with pytest.raises(ValueError):
        fuse(a, b, mode="max")


def _heldout_curves():
    spec = importlib.util.spec_from_file_location(
        "heldout_curves", Path(__file__).resolve().parents[1] / "bench" / "heldout_curves.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_heldout_curves_lays_phases_end_to_end_and_averages_the_last_evaluations(tmp_path, capsys):
    """bench/heldout_curves.py: the evaluations of every phase on one step axis (a later phase starts after
    the earlier one's last step), the mean of the last N; a run without evaluations refused with exit 2."""
    curves = _heldout_curves()
    (tmp_path / "run" / "m").mkdir(parents=True)
    phases = [{"name": "docids", "history": [[1, 3.0], [50, 2.0]]},
              {"name": "fit", "history": [[1, 1.0], [30, 0.5]],
               "evaluations": [[10, {"nDCG@10": 0.2}], [20, {"nDCG@10": 0.4}], [30, {"nDCG@10": 0.5}]]}]
    (tmp_path / "run" / "m" / "train.json").write_text(json.dumps({"phases": phases}))
    assert curves.curve(tmp_path / "run", "m") == [(60, 0.2), (70, 0.4), (80, 0.5)]
    curves.main([f"{tmp_path / 'run'}:m=mine", "--last", "2"])
    assert "| mine | 3 | 0.500 | 0.450 | 0.400-0.500 |" in capsys.readouterr().out
    (tmp_path / "run" / "m" / "train.json").write_text(json.dumps({"phases": phases[:1]}))
    with pytest.raises(SystemExit) as refused:
        curves.main([f"{tmp_path / 'run'}:m"])
    assert refused.value.code == 2 and "no held-out evaluations" in capsys.readouterr().err
    (tmp_path / "run" / "m" / "train.json").write_text("{not json")
    with pytest.raises(SystemExit) as refused:
        curves.main([f"{tmp_path / 'run'}:m"])
    assert refused.value.code == 2 and "not a training record" in capsys.readouterr().err
