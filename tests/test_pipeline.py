"""`genir run` end to end on a slice of real SciFact with a tiny backbone; the CLI around it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from genir.cli import app
from genir.data import load_dataset
from genir.evaluation import read_run
from genir.methods import make_settings
from genir.pipeline import run


def _slice(tmp_path_factory, shared_datasets, name: str, splits: dict[str, int], n_docs: int) -> Path:
    """A BEIR folder holding the first queries of each split, the documents judged for them, and filler
    documents in corpus order up to ``n_docs``."""
    c = load_dataset(name, shared_datasets)
    chosen = {split: list(c.qrels[split])[:n] for split, n in splits.items()}
    keep = {d for split, qs in chosen.items() for q in qs for d in c.qrels[split][q]}
    keep |= set([d for d in c.doc_ids if d not in keep][: max(0, n_docs - len(keep))])
    folder = tmp_path_factory.mktemp("data") / f"{name}-slice"
    (folder / "qrels").mkdir(parents=True)
    with open(folder / "corpus.jsonl", "w") as f:
        for d in c.doc_ids:
            if d in keep:
                f.write(json.dumps({"_id": d, "title": c.corpus[d].title, "text": c.corpus[d].text}) + "\n")
    with open(folder / "queries.jsonl", "w") as f:
        for q in sorted({q for qs in chosen.values() for q in qs}):
            f.write(json.dumps({"_id": q, "text": c.queries[q]}) + "\n")
    for split, qs in chosen.items():
        with open(folder / "qrels" / f"{split}.tsv", "w") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for q in qs:
                for d, g in c.qrels[split][q].items():
                    f.write(f"{q}\t{d}\t{g}\n")
    return folder


@pytest.fixture(scope="module")
def scifact_slice(tmp_path_factory, shared_datasets) -> Path:
    """120 SciFact documents: those judged for the first 40 train and 25 test queries, plus filler."""
    return _slice(tmp_path_factory, shared_datasets, "scifact", {"train": 40, "test": 25}, 120)


@pytest.fixture(scope="module")
def cisi_slice(tmp_path_factory, shared_datasets) -> Path:
    """CISI (test split only): the documents judged for the first 10 queries, plus filler up to 80."""
    return _slice(tmp_path_factory, shared_datasets, "cisi", {"test": 10}, 80)


@pytest.fixture(scope="module")
def cranfield_slice(tmp_path_factory, shared_datasets) -> Path:
    """Cranfield with graded judgements (0-4): 40 split_train and 12 split_test queries, >= 150 documents."""
    return _slice(tmp_path_factory, shared_datasets, "cranfield", {"split_train": 40, "split_test": 12}, 150)


def test_run_writes_a_full_report(scifact_slice, tiny_bert, tmp_path):
    out = tmp_path / "report"
    cfg = make_settings({"data": {"dataset": str(scifact_slice), "new_docs": 0.2}, "model": {"backbone": tiny_bert},
                         "baselines": ["bm25", "dense"], "methods": ["dsi-semantic", "dsi-atomic", "dsi-naive",
                                                                      "tied-atomic"],
                         "training": {"epochs": 2, "batch_size": 32}, "dsi": {"semantic_c": 8}, "out": str(out),
                         "search": {"beam": 20, "hybrid": ["tied-atomic+bm25"]}})
    report = run(cfg)
    names = [s["name"] for s in report["systems"]]
    assert names == ["bm25", "dense", "dsi-semantic", "dsi-atomic", "dsi-naive", "tied-atomic", "tied-atomic+bm25"]
    # the hybrid row: the two run files fused by RRF, its own row beside the pure ones
    from genir.search.fusion import fuse

    fused = fuse(read_run(out / "tied-atomic" / "tied-atomic.trec"), read_run(out / "baselines" / "bm25.trec"))
    hybrid = report["systems"][-1]
    assert hybrid["kind"] == "hybrid" and "Hybrid: tied-atomic + bm25 (rrf" in (out / "report.md").read_text()
    from genir.evaluation import evaluate as score

    assert hybrid["metrics"]["full"]["nDCG@10"] == pytest.approx(
        score(fused, load_dataset(str(scifact_slice)).qrels["test"])["full"]["nDCG@10"])
    for s in report["systems"][:-1]:
        assert set(s["metrics"]) == {"full", "seen", "unseen", "new-docs"}
        assert 0 < s["metrics"]["new-docs"]["n"] < 25
        assert s["metrics"]["full"]["n"] == 25
        assert s["queries_per_second"] > 0
    bm25 = report["systems"][0]["metrics"]["full"]
    assert bm25["nDCG@10"] > 0.3  # on 120 documents BM25 must find the judged ones
    gen = report["systems"][2]
    assert gen["encoder"] == "frozen" and gen["docids"]["collision_rate"] == 0.0
    assert gen["queries_per_second_beam10"] > 0 and gen["index_bytes_per_doc"] > 0
    tied = report["systems"][5]
    assert tied["metrics"]["full"]["R@100"] > 0  # 120 documents: the top 100 of them holds judged ones
    for f in ("report.md", "report.json", "docids_dsi-semantic.png", "training_loss.png",
              "baselines/bm25.trec", "dsi-atomic/dsi-atomic.trec", "dsi-semantic/model/model.safetensors"):
        assert (out / f).exists(), f
    run_file = read_run(out / "dsi-semantic" / "dsi-semantic.trec")
    assert set(run_file) <= set(load_dataset(str(scifact_slice)).qrels["test"])
    md = (out / "report.md").read_text()
    assert "| BM25 |" in md and "unseen" in md
    # a second invocation resumes: every stage is already done, nothing is retrained
    again = run(cfg)
    assert [s["metrics"] for s in again["systems"]] == [s["metrics"] for s in report["systems"]]
    # a narrower prefix beam is a search setting: dsi-semantic is searched again with it, not retrained, and
    # its rows are the folder's searcher's at that setting
    trained = (out / "dsi-semantic" / "model" / "model.safetensors").stat().st_mtime_ns
    values = cfg.to_dict()  # the run's one generative method (Tied-Atomic has no beam search to narrow)
    narrow = make_settings({**values, "methods": ["dsi-semantic"], "baselines": [],
                            "search": {**values["search"], "hybrid": [], "prefix_beam": 1}})
    row = run(narrow, redo={"dsi-semantic"})["systems"][0]
    assert row["prefix_beam"] == 1 and row["label"] == "dsi-semantic (prefix beam 1)"
    assert row["metrics"] != gen["metrics"]
    assert (out / "dsi-semantic" / "model" / "model.safetensors").stat().st_mtime_ns == trained
    from genir.retriever import Retriever

    searched = Retriever.load(out / "dsi-semantic", overrides={"search.prefix_beam": 1}).searcher.batch_search(
        load_dataset(str(scifact_slice)).split_queries("test"), 100)
    written = read_run(out / "dsi-semantic" / "dsi-semantic.trec")
    assert {q: [h.doc_id for h in hits] for q, hits in written.items()} == {
        q: [h.doc_id for h in hits] for q, hits in searched.items() if hits}


@pytest.mark.own_texts
def test_methods_of_one_run_train_on_their_own_indexing_texts(scifact_slice, tiny_bert, tmp_path):
    """DSI-atomic (preset "all") and DSI-random ("light") in one run: each trains on its own examples and frozen
    states, its folder records its texts, the report counts both; the run-wide preset makes DSI-atomic's stage
    differ while DSI-random's stays valid."""
    from genir.stages import StaleStageError

    out = tmp_path / "run"
    values = {"data": {"dataset": str(scifact_slice)}, "model": {"backbone": tiny_bert}, "baselines": [],
              "methods": ["dsi-atomic", "dsi-random"], "training": {"epochs": 1, "batch_size": 64}, "out": str(out),
              "search": {"beam": 5}}
    report = run(make_settings(values))
    atomic, light = report["systems"]
    assert atomic["indexing_texts"]["sentence_queries"] == 3 and light["indexing_texts"]["sentence_queries"] == 0
    assert atomic["indexing_texts"]["texts"] > 2 * light["indexing_texts"]["texts"]
    examples = [json.loads((out / m / "train.json").read_text())["examples"] for m in ("dsi-atomic", "dsi-random")]
    assert examples[0] > 2 * examples[1]  # each trained on its own texts
    for row in (atomic, light):
        recorded = json.loads((out / row["name"] / "retriever.json").read_text())["settings"]["data"]
        assert recorded["keyword_queries"] == row["indexing_texts"]["keyword_queries"]
    stores = sorted(json.loads(p.read_text())["texts"] for p in out.glob("encoded_texts-*.json"))
    assert stores == sorted([atomic["indexing_texts"]["texts"], light["indexing_texts"]["texts"]])
    assert sum(n.startswith("Indexing texts of") for n in report["data_notes"]) == 2
    assert [s["metrics"] for s in run(make_settings(values))["systems"]] == [atomic["metrics"], light["metrics"]]
    with pytest.raises(StaleStageError) as e:  # every method on the light texts: DSI-atomic's no longer match
        run(make_settings({**values, "data": {**values["data"], "indexing_texts": "light"}}))
    stale = str(e.value)
    assert "dsi-atomic:" in stale and "data.sentence_queries = 3 there, at its default now" in stale
    assert "dsi-random:" not in stale


def test_cli_run_evaluate_search_and_errors(scifact_slice, tiny_bert, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli"
    res = runner.invoke(app, ["run", "--dataset", str(scifact_slice), "--backbone", tiny_bert, "--method",
                              "dsi-atomic", "--baseline", "bm25", "--epochs", "1", "--beam", "5", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "dsi-atomic" in res.output
    res = runner.invoke(app, ["evaluate", str(out / "baselines" / "bm25.trec"), "--dataset", str(scifact_slice)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["full"]["n"] == 25
    res = runner.invoke(app, ["search", str(out / "dsi-atomic"), "vitamin D and bone density", "--k", "3"])
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.output.strip().splitlines()[-1])["hits"]) == 3
    tied = tmp_path / "cli-tied"
    res = runner.invoke(app, ["run", "--dataset", str(scifact_slice), "--backbone", tiny_bert, "--method",
                              "tied-atomic", "--no-baselines", "--epochs", "1", "--out", str(tied)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["search", str(tied / "tied-atomic"), "vitamin D"])  # the run's dataset is encoded
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["search", str(tied / "tied-atomic"), "vitamin D", "--k", "4",
                              "--dataset", str(scifact_slice)])
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.output.strip().splitlines()[-1])["hits"]) == 4
    res = runner.invoke(app, ["run", "--dataset", str(tmp_path / "nowhere"), "--no-baselines"])
    assert res.exit_code == 2 and "error:" in res.output
    res = runner.invoke(app, ["run", "--dataset", str(scifact_slice), "--method", "dsi-magic"])
    assert res.exit_code == 2 and "unknown method" in res.output
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: {dataset: x}\ntraining: {epochz: 3}\n")
    res = runner.invoke(app, ["run", "--config", str(cfg)])
    assert res.exit_code == 2 and "unknown setting training.epochz" in res.output and "epochs" in res.output
    res = runner.invoke(app, ["run", "--dataset", str(scifact_slice), "--set", "glen.tie_break=sometimes"])
    assert res.exit_code == 2 and "glen.tie_break" in res.output and "cosine, random" in res.output
    res = runner.invoke(app, ["run", "--dataset", str(scifact_slice), "--set", "training.epochs=many"])
    assert res.exit_code == 2 and "training.epochs: expected a number" in res.output
    res = runner.invoke(app, ["run", "--dataset", str(scifact_slice), "--set", "nosuch.key=1"])
    assert res.exit_code == 2 and "unknown settings group 'nosuch'" in res.output


def test_a_rerun_never_reports_a_stage_made_with_other_settings_or_data(scifact_slice, tiny_bert, tmp_path):
    """Same --out, other settings: stop before any work naming the keys; --redo recomputes only what differs."""
    runner, out = CliRunner(), tmp_path / "stale"
    base = ["run", "--dataset", str(scifact_slice), "--backbone", tiny_bert, "--method", "dsi-atomic",
            "--baseline", "bm25", "--epochs", "1", "--out", str(out)]
    res = runner.invoke(app, [*base, "--beam", "5"])
    assert res.exit_code == 0, res.output
    report_md, config = (out / "report.md").read_bytes(), (out / "config.json").read_bytes()
    weights = out / "dsi-atomic" / "model" / "model.safetensors"
    trained_at = weights.stat().st_mtime_ns
    first = json.loads((out / "dsi-atomic" / "result.json").read_text())
    assert first["fingerprint"] in report_md.decode()

    res = runner.invoke(app, [*base, "--beam", "3"])  # the search part differs
    assert res.exit_code == 2, res.output
    assert "dsi-atomic:" in res.output and "search.beam = 5 there, 3 now" in res.output and "bm25:" not in res.output
    assert (out / "report.md").read_bytes() == report_md and (out / "config.json").read_bytes() == config
    res = runner.invoke(app, [*base, "--beam", "3", "--set", "training.lr=0.002"])
    assert res.exit_code == 2 and "training.lr = 0.001 there, 0.002 now" in res.output

    res = runner.invoke(app, [*base, "--beam", "3", "--redo", "dsi-atomic"])  # re-searched, not retrained
    assert res.exit_code == 0, res.output
    again = json.loads((out / "dsi-atomic" / "result.json").read_text())
    assert again["beam"] == 3 and weights.stat().st_mtime_ns == trained_at
    assert again["fingerprint"] != first["fingerprint"]

    res = runner.invoke(app, [*base, "--beam", "3", "--epochs", "2", "--redo", "dsi-atomic"])  # retrained
    assert res.exit_code == 0, res.output
    assert json.loads((out / "dsi-atomic" / "result.json").read_text())["train_steps"] == 2 * again["train_steps"]

    # the same settings on other data: every stage differs by the dataset's content hash
    changed = tmp_path / "changed"
    shutil.copytree(scifact_slice, changed)
    lines = (changed / "corpus.jsonl").read_text().splitlines()
    lines[0] = json.dumps({**json.loads(lines[0]), "text": "edited"})
    (changed / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    res = runner.invoke(app, [*base[:2], str(changed), *base[3:], "--beam", "3", "--epochs", "2"])
    assert res.exit_code == 2 and "dataset.sha256 = " in res.output and "bm25:" in res.output
    res = runner.invoke(app, [*base[:2], str(changed), *base[3:], "--beam", "3", "--epochs", "2", "--fresh"])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    assert report["dataset_path"] == str(changed.resolve()) and len(report["dataset_sha256"]) == 64


def test_dense_trained_baseline(scifact_slice, tmp_path):
    report = run(make_settings({"data": {"dataset": str(scifact_slice)}, "baselines": ["dense", "dense-trained"],
                                "methods": [], "dense": {"epochs": 1, "batch_size": 8, "train_max_length": 64},
                                "out": str(tmp_path / "d")}))
    zero_shot, trained = report["systems"]
    assert trained["name"] == "dense-trained" and trained["encoder"] == "full" and trained["train_seconds"] > 0
    assert trained["metrics"]["full"]["n"] == zero_shot["metrics"]["full"]["n"] == 25
    # fine-tuning changed the encoder: the run differs from the zero-shot one
    assert trained["metrics"]["full"] != zero_shot["metrics"]["full"]
    # the fine-tuned encoder is saved with the embeddings: the folder opens itself and ranks as the run did
    from genir.retriever import Retriever

    folder = tmp_path / "d" / "baselines" / "dense-trained"
    assert (folder / "encoder" / "config.json").exists()
    expected = read_run(tmp_path / "d" / "baselines" / "dense-trained.trec")
    queries = load_dataset(str(scifact_slice)).split_queries("test")
    got = Retriever.load(folder).batch_search(queries, 100)
    assert {q: [h.doc_id for h in hits] for q, hits in got.items()} == \
        {q: [h.doc_id for h in hits] for q, hits in expected.items()}
    # a setting of the training loop that fine-tuning reads makes the stage stale (its learning rate is
    # training.encoder_lr), named before any work; training.lr, which it does not read, is refused as unread
    values = {"data": {"dataset": str(scifact_slice)}, "baselines": ["dense-trained"], "methods": [],
              "dense": {"epochs": 1, "batch_size": 8, "train_max_length": 64}, "out": str(tmp_path / "d")}
    for key, value in (("encoder_lr", 1e-4), ("grad_accumulation", 2)):
        with pytest.raises(ValueError, match=f"training.{key}"):
            run(make_settings({**values, "training": {key: value}}))
    with pytest.raises(ValueError, match="training.lr is read by the methods that train; this run has none"):
        run(make_settings({**values, "training": {"lr": 0.5}}))


def test_genret_learns_docids_tokenizes_new_documents_and_feeds_the_ablation(scifact_slice, tiny_bert, tmp_path):
    out = tmp_path / "genret"
    cfg = make_settings({"data": {"dataset": str(scifact_slice), "new_docs": 0.2}, "model": {"backbone": tiny_bert},
                         "baselines": [], "methods": ["genret", "genret-nolearn"], "out": str(out),
                         "training": {"epochs": 1, "batch_size": 16}, "search": {"beam": 10},
                         "genret": {"codes": 8, "epochs": 2, "warmup_epochs": 1, "fit_epochs": 1}})
    report = run(cfg)
    genret, nolearn = report["systems"]
    assert genret["docids"]["documents"] == 120 and genret["docids"]["max_length"] == 4  # 8^4 >= 10 x 120
    steps = genret["progressive"]
    assert [e["step"] for e in steps] == [1, 2, 3, 4]
    from genir.docids import DocIdTable
    from genir.docids.balance import diversity
    from genir.workspace import Workspace

    table = DocIdTable.load(out / "genret" / "docids")
    # each step's reported diversity and distinct docids are those of the trained documents' final codes
    new = Workspace(cfg).new_doc_ids
    rows = [i for i, d in enumerate(table.doc_ids) if d not in new]
    for t, e in enumerate(steps):
        assert e["diversity"] == pytest.approx(diversity(table.codes[rows, t], 8))
        assert e["distinct_docids"] == len(np.unique(table.codes[rows, : t + 1], axis=0))
    assert table.meta["new_documents"] == 24 and (table.codes >= 0).all()  # new documents tokenized by Q
    assert (DocIdTable.load(out / "genret-nolearn" / "docids").codes == table.codes).all()
    assert genret["metrics"]["new-docs"]["n"] > 0 and genret["metrics"]["full"]["n"] == 25
    md = (out / "report.md").read_text()
    assert "progressive steps" in md and (out / "docids_genret.png").exists()
    # the trained model folder reloads as the codebook model and searches through the CLI
    from genir.methods.genret.model import CodebookSeq2Seq
    from genir.models import DocidSeq2Seq

    assert isinstance(DocidSeq2Seq.load(out / "genret" / "model"), CodebookSeq2Seq)
    # the folder keeps d_T of every document, and opens ordering a shared docid's documents by q_T . d_T
    from genir.retriever import Retriever
    from genir.search.generative import StateOrderedSearcher

    states = np.load(out / "genret" / "doc_states.npy")
    assert states.shape[0] == len(table) and np.isfinite(states).all() and np.abs(states).sum() > 0
    assert isinstance(Retriever.load(out / "genret").searcher, StateOrderedSearcher)
    with pytest.warns(UserWarning, match="no doc_states.npy"):
        (out / "genret" / "doc_states.npy").rename(out / "genret" / "moved.npy")
        assert not isinstance(Retriever.load(out / "genret").searcher, StateOrderedSearcher)
    assert not isinstance(Retriever.load(out / "genret", overrides={"genret.tie_break": "corpus"}).searcher,
                          StateOrderedSearcher)
    # the ablation switches reach the trainer through --set
    result = CliRunner().invoke(app, ["run", "--dataset", str(scifact_slice), "--backbone", tiny_bert,
                                      "--no-baselines", "--method", "genret", "--out", str(tmp_path / "abl"),
                                      "--set", "genret.reassign=false", "--set", "genret.diverse_init=false",
                                      "--set", "genret.codes=8", "--set", "genret.length=1",
                                      "--set", "genret.epochs=1", "--set", "genret.fit_epochs=0",
                                      "--max-test-queries", "5"])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "abl" / "genret" / "train.json").read_text())["genret_config"]
    assert saved["reassign"] is False and saved["diverse_init"] is False
    bad = CliRunner().invoke(app, ["run", "--dataset", str(scifact_slice), "--set", "genret.codes=many"])
    assert bad.exit_code == 2 and "genret.codes: expected an integer" in bad.output


def test_glen_two_phases_collision_ranking_and_cli_search(scifact_slice, tiny_bert, tmp_path):
    out = tmp_path / "glen"
    cfg = make_settings({"data": {"dataset": str(scifact_slice), "new_docs": 0.2}, "model": {"backbone": tiny_bert},
                         "baselines": [], "methods": ["glen", "glen-keyword"], "out": str(out),
                         "training": {"epochs": 1, "batch_size": 16}, "search": {"beam": 10},
                         "glen": {"keyword_epochs": 2, "refine_epochs": 2, "batch_size": 8, "negatives": 3}})
    report = run(cfg)
    glen, keyword = report["systems"]
    assert glen["docids"]["max_length"] == 3 and glen["docids"]["vocab_size"] == 30522
    assert glen["metrics"]["full"]["n"] == 25 and glen["metrics"]["new-docs"]["n"] > 0
    assert keyword["docids"]["scheme"] == "keyword"
    assert (out / "glen" / "identifiers_phase1.npy").exists()
    ins = glen["inspection"]
    assert len(ins["queries"]) == 5 and all(d["phase1"] and d["final"] for d in ins["documents"])
    assert sum(ins["docs_per_identifier"].values()) == glen["docids"]["distinct_docids"]
    # the count of identifiers phase 2 changed is the count of rows that differ between the two tables
    from genir.docids import DocIdTable

    before = np.load(out / "glen" / "identifiers_phase1.npy")
    final = DocIdTable.load(out / "glen" / "docids").codes
    assert ins["changed_by_refinement"] == int((before != final).any(1).sum())
    assert glen["tie_break"]["queries"] >= 0 and len(glen["docid_relevance"]["test"]) == 3
    assert "identifiers as words" in (out / "report.md").read_text()
    assert not (out / "glen-keyword" / "phase1").exists()  # phase 1 is shared with the glen run
    res = CliRunner().invoke(app, ["search", str(out / "glen"), "vitamin D and bone fractures", "--k", "3"])
    assert res.exit_code == 0, res.output

    # phase 2 from a given phase-1 model (glen.phase1_model): phase 1 is not trained again (no time, no folder),
    # its folder's content is in the fingerprint; phase 1's own settings beside it are refused (nothing reads them)
    given = out / "glen" / "phase1" / "model"
    again = tmp_path / "phase2-only"
    phase2 = {k: v for k, v in cfg.to_dict()["glen"].items() if k != "keyword_epochs"}
    from genir.settings import SettingsError

    with pytest.raises(SettingsError, match="glen.keyword_epochs=2.0: read by phase 1, which glen.phase1_model"):
        run(make_settings({**cfg.to_dict(), "methods": ["glen"], "out": str(again),
                           "glen": {**phase2, "keyword_epochs": 2, "phase1_model": str(given)}}))
    assert not again.exists()
    run(make_settings({**cfg.to_dict(), "methods": ["glen"], "out": str(again),
                       "glen": {**phase2, "tau_floor": 1.0, "phase1_model": str(given)}}))
    info = json.loads((again / "glen" / "train.json").read_text())
    assert info["phase1_seconds"] == 0 and info["glen_config"]["phase1_model"] == str(given)
    assert np.array_equal(np.load(again / "glen" / "identifiers_phase1.npy"), before)
    assert not (again / "glen" / "phase1").exists()
    train_keys = json.loads((again / "glen" / "stage.json").read_text())["train"]
    assert train_keys["glen.tau_floor"] == 1 and "glen.phase1_model.sha256" in train_keys
    bad = CliRunner().invoke(app, ["run", "--dataset", str(scifact_slice), "--method", "glen", "--set",
                                   f"glen.phase1_model={tmp_path / 'nothing'}", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "not a model folder" in bad.output, bad.output


def test_transfer_indexes_another_corpus_without_retraining(scifact_slice, cisi_slice, tiny_bert, tmp_path):
    # zero-shot (GLEN Sec. 4, BEIR): models trained on a SciFact slice index and search a CISI slice
    src = tmp_path / "src"
    run(make_settings({"data": {"dataset": str(scifact_slice)}, "model": {"backbone": tiny_bert}, "baselines": [],
                       "out": str(src), "search": {"beam": 10}, "methods": ["glen", "genret", "dsi-semantic",
                                                                           "dsi-atomic", "tied-atomic"],
                       "training": {"epochs": 1, "batch_size": 16}, "dsi": {"semantic_c": 8},
                       "glen": {"keyword_epochs": 1, "refine_epochs": 1, "batch_size": 8, "negatives": 3},
                       "genret": {"codes": 8, "epochs": 1, "warmup_epochs": 1, "fit_epochs": 0}}))
    dst = tmp_path / "dst"
    res = CliRunner().invoke(app, ["transfer", "--from", str(src), "--dataset", str(cisi_slice), "--baseline", "bm25",
                                   "--out", str(dst)])
    assert res.exit_code == 0, res.output
    report = json.loads((dst / "report.json").read_text())
    # dsi-atomic has no output for an unseen document, so by default it is not transferred
    assert [s["name"] for s in report["systems"]] == ["bm25", "glen", "genret", "dsi-semantic", "tied-atomic"]
    cisi = load_dataset(str(cisi_slice))
    glen = report["systems"][1]
    assert glen["transferred_from"] == str(src) and glen["train_steps"] == 0
    assert glen["docids"]["documents"] == len(cisi.corpus) and glen["metrics"]["full"]["n"] == 10
    from genir.docids import DocIdTable
    from genir.methods import read_settings
    from genir.methods.glen import identify_texts
    from genir.models import DocidSeq2Seq
    from genir.workspace import Workspace

    model = DocidSeq2Seq.load(src / "glen" / "model").eval()
    settings = read_settings(src)
    settings.set("data.dataset", str(cisi_slice))
    settings.set("data.train_split", "none")
    target = Workspace(settings, out=tmp_path / "x")
    ids, logits = identify_texts(model, target.lead_texts(target.docs), settings.model.doc_max_length, "cpu")
    table = DocIdTable.load(dst / "glen" / "docids")
    assert table.doc_ids == list(cisi.corpus) and (table.codes == ids).all()  # the trained model's Eq. 2
    assert np.allclose(np.load(dst / "glen" / "identifier_logits.npy"), logits, atol=1e-5)
    genret = DocidSeq2Seq.load(src / "genret" / "model").eval()  # GenRet: Q(z | d) tokenizes the new corpus
    with torch.inference_mode():
        mem, mask = genret.encode_texts(target.lead_texts(target.docs), settings.model.doc_max_length)
        codes = genret.assign_codes(mem, mask).numpy()
    assert (DocIdTable.load(dst / "genret" / "docids").codes == codes).all()
    # DSI-semantic: the new corpus placed in the trained k-means tree, by the dense embeddings of both corpora
    from genir.docids.schemes import semantic_reindex

    trained_sem = DocIdTable.load(src / "dsi-semantic" / "docids")
    src_row = {d: i for i, d in enumerate(load_dataset(str(scifact_slice)).corpus)}
    src_emb = np.load(src / "doc_embeddings.npy")[[src_row[d] for d in trained_sem.doc_ids]]
    placed, _ = semantic_reindex(trained_sem, src_emb, np.load(dst / "doc_embeddings.npy"))
    assert [list(x) for x in DocIdTable.load(dst / "dsi-semantic" / "docids").sequences()] == placed
    # Tied-Atomic: the new corpus's docids are the trained model's encodings of its documents (Eq. 2)
    from genir.methods.tied.model import TiedSeq2Seq
    from genir.methods.tied.search import TiedAtomicIndex, TiedAtomicSearcher
    from genir.retriever import Retriever

    tied = TiedSeq2Seq.load(src / "tied-atomic" / "model").eval()
    direct = TiedAtomicSearcher(tied, TiedAtomicIndex(tied.tied_dim))
    direct.add_documents(target.docs)
    moved = Retriever.load(dst / "tied-atomic", docs=target.docs).searcher
    query = next(iter(cisi.queries.values()))
    assert [h.doc_id for h in moved.search(query, 5)] == [h.doc_id for h in direct.search(query, 5)]
    assert len(DocIdTable.load(dst / "tied-atomic" / "docids")) == len(cisi.corpus)
    # one method that cannot run does not lose the others' rows: it is reported as failed
    bad = CliRunner().invoke(app, ["transfer", "--from", str(src), "--dataset", str(cisi_slice), "--method",
                                   "dsi-atomic", "--method", "genret", "--baseline", "bm25",
                                   "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "dsi-atomic failed" in bad.output and "without retraining" in bad.output
    partial = json.loads((tmp_path / "bad" / "report.json").read_text())
    assert [s["name"] for s in partial["systems"]] == ["bm25", "genret"]
    assert [f["name"] for f in partial["failed"]] == ["dsi-atomic"]
    assert "dsi-atomic failed" in (tmp_path / "bad" / "report.md").read_text()
    # a search setting other than the source's reaches the transferred searcher (its record, its run file, its
    # row's label); a setting no searcher of the transfer reads is refused before any work
    def transfer_with(out: Path, *extra: str):
        return CliRunner().invoke(app, ["transfer", "--from", str(src), "--dataset", str(cisi_slice), "--method",
                                        "dsi-semantic", "--baseline", "bm25", *extra, "--out", str(out)])

    narrow = transfer_with(tmp_path / "narrow", "--set", "search.prefix_beam=1")
    assert narrow.exit_code == 0, narrow.output
    row = json.loads((tmp_path / "narrow" / "report.json").read_text())["systems"][1]
    assert row["prefix_beam"] == 1 and "prefix beam 1" in row["label"]
    folder = tmp_path / "narrow" / "dsi-semantic"
    assert Retriever.load(folder).searcher.prefix_beam == 1
    narrowed = (folder / "dsi-semantic.trec").read_text()
    assert narrowed != (dst / "dsi-semantic" / "dsi-semantic.trec").read_text()  # the full beam's run differs
    ranked = [tuple(line.split()[0:3:2]) for line in narrowed.splitlines()]
    hits = Retriever.load(folder).searcher.batch_search({q: cisi.queries[q] for q, _ in ranked}, 100)
    assert [(q, h.doc_id) for q in dict.fromkeys(q for q, _ in ranked) for h in hits[q]] == ranked
    for extra, message in ((["--set", "training.epochs=3"], "no searcher of this run reads it"),
                           (["--set", "search.prefix_beam=20"], "above search.beam=10"),
                           (["--method", "tied-atomic", "--set", "search.prefix_beam=1"], "tied-atomic search(es)")):
        refused = transfer_with(tmp_path / "refused", *extra)
        assert refused.exit_code == 2 and message in refused.output, refused.output
        assert not (tmp_path / "refused").exists()
    # the source retrained in place (here: two trained docids swapped) makes the transfer stale, though its
    # path and stage record are the same: the transfer read the source's tree, so it is not reused
    tsv = src / "dsi-semantic" / "docids" / "docids.tsv"
    lines = tsv.read_text().splitlines()
    (a, code_a), (b, code_b) = (line.split("\t", 1) for line in lines[:2])
    tsv.write_text("\n".join([f"{a}\t{code_b}", f"{b}\t{code_a}", *lines[2:]]) + "\n")
    again = CliRunner().invoke(app, ["transfer", "--from", str(src), "--dataset", str(cisi_slice), "--baseline",
                                     "bm25", "--out", str(dst)])
    assert again.exit_code == 2 and "dsi-semantic:" in again.output
    assert "source.dsi-semantic/docids.sha256" in again.output
    assert "glen:" not in again.output and "genret:" not in again.output  # their source files are unchanged


def test_merge_without_training_judgements_is_refused_and_rqvae_is_not(cranfield_slice, tiny_bert, tmp_path):
    """MERGE's relevance losses read the training judgements: with none it would be the vanilla RQ-VAE under
    MERGE's name, so it is refused before any work; rqvae takes the same corpus."""
    def dry_run(method: str, out: Path):
        return CliRunner().invoke(app, ["run", "--dataset", str(cranfield_slice), "--backbone", tiny_bert,
                                        "--train-split", "", "--test-split", "split_test", "--method", method,
                                        "--no-baselines", "--dry-run", "--out", str(out)])

    refused = dry_run("merge", tmp_path / "merge")
    assert refused.exit_code == 2 and "--method rqvae" in refused.output and "Traceback" not in refused.output
    assert not (tmp_path / "merge").exists()
    accepted = dry_run("rqvae", tmp_path / "rqvae")
    assert accepted.exit_code == 0 and "rqvae: new" in accepted.output, accepted.output


def test_merge_and_vanilla_rqvae_on_graded_judgements(cranfield_slice, cisi_slice, tiny_bert, tmp_path):
    out = tmp_path / "merge"
    res = CliRunner().invoke(app, [
        "run", "--dataset", str(cranfield_slice), "--backbone", tiny_bert, "--train-split", "split_train",
        "--test-split", "split_test", "--method", "merge", "--method", "rqvae", "--no-baselines", "--epochs", "2",
        "--beam", "10", "--out", str(out), "--set", "merge.codes=8", "--set", "merge.epochs=20",
        "--set", "merge.batch_size=64"])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    merge, vanilla = report["systems"]
    for s in (merge, vanilla):
        d = s["docids"]
        assert d["collision_rate"] == 0.0  # Sinkhorn re-assignment, or an extra level where a prefix is full
        extended = s["rqvae"]["extended"]
        assert s["rqvae"]["reassigned"] + extended == s["rqvae"]["collisions_before"]
        assert d["max_length"] == (5 if extended else 4) and (d["vocab_size"] == 32 or extended)  # <a_i>..<d_l>
        assert len(s["docid_relevance"]["test"]) == d["max_length"] and s["metrics"]["full"]["n"] == 12
    assert merge["rqvae"]["relevance"] and not vanilla["rqvae"]["relevance"]
    assert merge["rqvae"]["relevance_documents"] > 0 and merge["rqvae"]["grades"] == 4
    info = json.loads((out / "merge" / "rqvae" / "info.json").read_text())
    n_docs = len(load_dataset(str(cranfield_slice)).corpus)
    assert info["steps"] == 20 * -(-n_docs // 64) and "align" in info["final"] and "inner" in info["final"]
    from genir.models import DocidSeq2Seq

    model = DocidSeq2Seq.load(out / "merge" / "model")
    assert model.query_prefix == "<retrieval>" and model.config.extra["position_weight"] is True
    codes = np.array([list(map(int, line.split("\t")[1].split())) for line in
                      (out / "merge" / "docids" / "docids.tsv").read_text().splitlines()])
    for level in range(4):  # level l's code c is token l * K + c
        assert ((codes[:, level] >= 8 * level) & (codes[:, level] < 8 * (level + 1))).all()
    assert "distinct codes per level" in (out / "report.md").read_text()
    # zero-shot: the RQ-VAE trained here quantises another corpus (standardised by the trained documents'
    # statistics), its docids made distinct from each other as in training
    dst = tmp_path / "merge-cisi"
    res = CliRunner().invoke(app, ["transfer", "--from", str(out), "--dataset", str(cisi_slice), "--baseline", "bm25",
                                   "--out", str(dst)])
    assert res.exit_code == 0, res.output
    assert [s["name"] for s in json.loads((dst / "report.json").read_text())["systems"]] == ["bm25", "merge", "rqvae"]
    from genir.docids import DocIdTable
    from genir.methods.merge.method import quantized_docids

    for name in ("merge", "rqvae"):
        expected, _ = quantized_docids(out / name / "rqvae" / "quantizer", np.load(dst / "doc_embeddings.npy"), [])
        table = DocIdTable.load(dst / name / "docids")
        assert [list(x) for x in table.sequences()] == expected
        # a docid is shared only where every last code under its prefix is taken (counted)
        assert table.meta["sharing_a_docid"] == len(table) - table.stats()["distinct_docids"]
        assert table.doc_ids == list(load_dataset(str(cisi_slice)).corpus)
    # the transfer read the source's quantizer: one retrained in place (here, its weights perturbed) is not
    # reused stale; the other method's transfer, whose source is unchanged, stands
    from safetensors.torch import load_file, save_file

    weights = out / "merge" / "rqvae" / "quantizer" / "quantizer.safetensors"
    tensors = load_file(weights)
    save_file({k: v + 1e-3 for k, v in tensors.items()}, weights)
    again = CliRunner().invoke(app, ["transfer", "--from", str(out), "--dataset", str(cisi_slice), "--baseline",
                                     "bm25", "--out", str(dst)])
    assert again.exit_code == 2 and "merge:" in again.output and "rqvae:" not in again.output
    assert "source.merge/rqvae.sha256" in again.output


def test_search_and_serve_rank_exactly_as_the_report(scifact_slice, tiny_bert, tmp_path):
    """One searcher factory: `genir search` and `genir serve` open a folder with the settings the run
    measured (tied-atomic with tied.mode=dense, GLEN with glen.tie_break=random), not the defaults."""
    import urllib.request

    from genir.live import LiveIndex
    from genir.retriever import Retriever
    from tests.test_serve import start_server

    out = tmp_path / "run"
    res = CliRunner().invoke(app, [
        "run", "--dataset", str(scifact_slice), "--backbone", tiny_bert, "--no-baselines", "--method", "tied-atomic",
        "--method", "glen", "--epochs", "1", "--beam", "10", "--tied-mode", "dense", "--out", str(out),
        "--set", "glen.tie_break=random", "--set", "glen.keyword_epochs=1", "--set", "glen.refine_epochs=1",
        "--set", "glen.batch_size=8", "--set", "glen.negatives=3"])
    assert res.exit_code == 0, res.output
    queries = load_dataset(str(scifact_slice)).split_queries("test")
    for name in ("tied-atomic", "glen"):
        folder = out / name
        reported = {q: [h.doc_id for h in hits] for q, hits in read_run(folder / f"{name}.trec").items()}
        res = CliRunner().invoke(app, ["search", str(folder), *queries.values(), "--k", "100"])
        assert res.exit_code == 0, res.output
        lines = [json.loads(line) for line in res.output.strip().splitlines()]
        assert [[d for d, _ in line["hits"]] for line in lines] == [reported[q] for q in queries]
        searcher = Retriever.load(folder).searcher
        assert getattr(searcher, "mode", "dense") == "dense" and getattr(searcher, "tie_mode", "random") == "random"
        if name == "glen":  # the random order within an identifier is exercised: some ranking holds a tie
            ranked = searcher.batch_search(queries, 100).values()
            assert any(len(h) > len({x.score for x in h}) for h in ranked)
        url, stop = start_server(LiveIndex(out, [name], baselines=()))
        try:
            body = json.dumps({"queries": queries, "k": 100, "method": name}).encode()
            req = urllib.request.Request(f"{url}/search", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
            served = json.loads(urllib.request.urlopen(req, timeout=60).read())
        finally:
            stop()
        assert {q: [d for d, _ in hits] for q, hits in served.items()} == {q: reported[q] for q in queries}


def test_a_recipe_revision_makes_an_older_stage_different(scifact_slice, tiny_bert, tmp_path):
    """A fix that changes what the same settings train bumps the method's revision: a folder made by the older
    recipe is reported as different (and not resumed as this one); methods at revision 1 keep their prints."""
    from genir.pipeline import Pipeline
    from genir.stages import _differences

    cfg = make_settings({"data": {"dataset": str(scifact_slice)}, "model": {"backbone": tiny_bert},
                         "methods": ["merge", "dsi-atomic"], "baselines": [], "out": str(tmp_path / "r")})
    pipeline = Pipeline(cfg)
    merge, dsi = pipeline.method_stage("merge").fingerprint, pipeline.method_stage("dsi-atomic").fingerprint
    assert merge.train["recipe.revision"] == 2 and "recipe.revision" not in dsi.train
    older = {k: v for k, v in merge.train.items() if k != "recipe.revision"}
    assert _differences(older, merge.train)  # what the stage check reports, naming the key


def test_holdout_draws_held_out_ndcg_after_each_epoch_without_changing_training(scifact_slice, tiny_bert, tmp_path,
                                                                              monkeypatch):
    import genir.methods.base as base
    from genir.training import planned_steps

    def settings(out):
        return make_settings({"data": {"dataset": str(scifact_slice), "holdout": 0.3},
                              "model": {"backbone": tiny_bert}, "baselines": [], "methods": ["dsi-atomic"],
                              "out": str(out), "search": {"beam": 10}, "training": {"epochs": 3, "batch_size": 16}})

    report = run(settings(tmp_path / "a"))
    info = json.loads((tmp_path / "a" / "dsi-atomic" / "train.json").read_text())
    evals = next(p for p in info["phases"] if p["name"] == "retriever")["evaluations"]
    per_epoch = planned_steps(info["examples"], 16, 1)
    assert [step for step, _ in evals] == [per_epoch, 2 * per_epoch, 3 * per_epoch]
    # the last point is the trained model's held-out nDCG@10 at beam 10: what the run itself reports
    held_out = next(s for s in report["systems"] if s["name"] == "dsi-atomic")["metrics"]["full"]["nDCG@10"]
    assert evals[-1][1]["nDCG@10"] == pytest.approx(held_out, abs=1e-9)
    assert len({e["nDCG@10"] for _, e in evals}) > 1  # the points are the model at each epoch, not one figure
    # evaluating after each epoch does not change what trains
    monkeypatch.setattr(base, "held_out_evaluation", lambda ws, searcher: None)
    run(settings(tmp_path / "b"))
    other = json.loads((tmp_path / "b" / "dsi-atomic" / "train.json").read_text())
    assert next(p for p in other["phases"] if p["name"] == "retriever")["evaluations"] == []
    assert other["history"] == info["history"]
    from safetensors.torch import load_file

    a, b = (load_file(str(next((tmp_path / r / "dsi-atomic" / "model").glob("*.safetensors")))) for r in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)
