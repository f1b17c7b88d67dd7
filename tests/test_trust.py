"""No input changes a result silently: a file a stage reads is in its fingerprint by its content, and inputs
that would make a result meaningless are refused with exit code 2 and a message saying what is wrong."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from genir.cli import app
from tests.test_settings import scifact_small  # noqa: F401 - the fixture


def _run(*args: str):
    return CliRunner().invoke(app, ["run", *args])


@pytest.fixture(scope="module")
def small_run(scifact_small, tiny_bert, tmp_path_factory):  # noqa: F811
    """A dsi-atomic run on the slice, trained on a pseudo-query file."""
    folder = tmp_path_factory.mktemp("trust")
    pq = folder / "pq.tsv"
    corpus = [json.loads(line)["_id"] for line in (scifact_small / "corpus.jsonl").read_text().splitlines()]
    pq.write_text("".join(f"{d}\tquestion about document {d}\n" for d in corpus))
    args = ["--dataset", str(scifact_small), "--backbone", tiny_bert, "--no-baselines", "--method", "dsi-atomic",
            "--epochs", "1", "--set", "model.decoder_ff=64", "--pseudo-queries", str(pq), "--out", str(folder / "run")]
    res = _run(*args)
    assert res.exit_code == 0, res.output
    return folder, args, pq


def test_a_rewritten_file_at_the_same_path_is_a_changed_stage(small_run):
    folder, args, pq = small_run
    stage = json.loads((folder / "run" / "dsi-atomic" / "stage.json").read_text())
    assert "data.pseudo_queries.sha256" in json.dumps(stage)
    assert _run(*args).exit_code == 0  # unchanged: reused
    original = pq.read_text()
    pq.write_text(original.replace("question about", "a different question about"))
    try:
        res = _run(*args)
        assert res.exit_code == 2 and "data.pseudo_queries.sha256" in res.output, res.output
        before = (folder / "run" / "dsi-atomic" / "dsi-atomic.trec").read_bytes()
        res = _run(*args, "--redo", "dsi-atomic")
        assert res.exit_code == 0, res.output
        stage = json.loads((folder / "run" / "dsi-atomic" / "stage.json").read_text())
        assert stage != {} and (folder / "run" / "dsi-atomic" / "dsi-atomic.trec").read_bytes() != before
    finally:
        pq.write_text(original)


def test_training_on_the_evaluated_split_is_refused(scifact_small, tiny_bert, tmp_path):  # noqa: F811
    res = _run("--dataset", str(scifact_small), "--backbone", tiny_bert, "--train-split", "test", "--no-baselines",
               "--method", "dsi-atomic", "--out", str(tmp_path / "r"))
    assert res.exit_code == 2 and "is the evaluated split" in res.output
    assert not (tmp_path / "r").exists()


def test_a_held_out_set_with_no_query_is_refused(scifact_small, tmp_path):  # noqa: F811
    res = _run("--dataset", str(scifact_small), "--holdout", "0.001", "--no-methods", "--baseline", "bm25",
               "--out", str(tmp_path / "r"))
    assert res.exit_code == 2 and "no query to evaluate" in res.output and "hold out a larger share" in res.output
    assert not (tmp_path / "r").exists()


def test_a_transfer_into_its_own_source_is_refused(small_run, scifact_small):  # noqa: F811
    folder, _, _ = small_run
    config = (folder / "run" / "config.json").read_bytes()
    res = CliRunner().invoke(app, ["transfer", "--from", str(folder / "run"), "--dataset", str(scifact_small),
                                   "--method", "dsi-atomic", "--baseline", "bm25", "--out", str(folder / "run")])
    assert res.exit_code == 2 and "is the run transferred from" in res.output
    assert (folder / "run" / "config.json").read_bytes() == config


def test_transfer_settings_keep_the_source_recipe_and_train_on_nothing_of_the_target(small_run):
    from genir.methods import read_settings, transfer_settings

    folder, _, _ = small_run
    source = read_settings(folder / "run")
    settings = transfer_settings(folder / "run", "data/cisi", out=folder / "t")
    assert settings.data.dataset == "data/cisi" and settings.data.train_split is None
    assert settings.data.holdout == 0 and settings.data.new_docs == 0 and settings.out == str(folder / "t")
    assert settings.methods == [] and settings.baselines == ["bm25", "dense"]  # dsi-atomic cannot index new docs
    assert settings.model == source.model and settings.training == source.training and settings.dsi == source.dsi
    assert transfer_settings(folder / "run", "cisi", ["dsi-atomic"], ["bm25"]).methods == ["dsi-atomic"]
    with pytest.raises(ValueError, match="not a genir run folder"):
        transfer_settings(folder, "cisi")


def test_a_transfer_refuses_training_settings_changed_by_hand(small_run, scifact_small):  # noqa: F811
    # from Python, a transfer's settings are any Settings: a training or docid setting changed on them would be
    # recorded in the transfer's stages but never read (the models are the source's), so it is refused
    from genir.methods import make_settings, transfer_settings
    from genir.pipeline import transfer
    from genir.settings import SettingsError

    folder, _, _ = small_run
    out = folder / "by-hand"
    for key, value in (("training.epochs", 7), ("model.doc_max_length", 17), ("dsi.semantic_c", 3),
                       ("data.lead_words", 9), ("data.indexing_texts", "light")):
        settings = transfer_settings(folder / "run", str(scifact_small), [], ["bm25"], out=out)
        settings.set(key, value)
        with pytest.raises(SettingsError, match=rf"{key}=\S+: the transferred models were made with"):
            transfer(folder / "run", settings)
        assert not out.exists()
    # a budget left unset is compared by the value it resolves to (the source recorded its resolved settings)
    from genir.methods import read_settings
    from genir.retriever import refuse_recipe_changes

    values = transfer_settings(folder / "run", str(scifact_small), [], ["bm25"], out=out).to_dict()
    values["training"]["lr"] = None  # 1e-3 when resolved, as recorded
    refuse_recipe_changes(make_settings(values), read_settings(folder / "run"))
    # what a transfer does read may differ from the source's: search and runtime settings
    settings = transfer_settings(folder / "run", str(scifact_small), [], ["bm25"], out=out)
    settings.set("search.k", 20)
    settings.set("training.device", "cpu")
    settings.set("data.max_test_queries", 3)
    report = transfer(folder / "run", settings)
    assert [s["name"] for s in report["systems"]] == ["bm25"] and (out / "report.json").exists()
    run_file = next(out.rglob("bm25.trec")).read_text().splitlines()
    assert max(int(line.split()[3]) for line in run_file) == 20  # search.k read: 20 hits per query
    assert len({line.split()[0] for line in run_file}) == 3


def test_a_model_with_nan_weights_is_refused_by_name(small_run):
    from safetensors.torch import load_file, save_file

    from genir.data import DataError
    from genir.models import DocidSeq2Seq

    folder, _, _ = small_run
    model = folder / "nan-model"
    shutil.copytree(folder / "run" / "dsi-atomic" / "model", model)
    state = load_file(str(model / "model.safetensors"))
    name = next(k for k in state if k.startswith("head"))
    state[name][0] = float("nan")
    save_file(state, str(model / "model.safetensors"))
    with pytest.raises(DataError, match="NaN or infinite") as e:
        DocidSeq2Seq.load(model)
    assert "model.safetensors" in str(e.value) and name in str(e.value)
    assert torch.isfinite(load_file(str(folder / "run" / "dsi-atomic" / "model" / "model.safetensors"))[name]).all()


def test_a_folder_renamed_from_another_method_is_refused(small_run):
    folder, args, _ = small_run
    copy = folder / "renamed"
    shutil.copytree(folder / "run", copy)
    shutil.move(copy / "dsi-atomic", copy / "dsi-naive")
    res = _run(*[a if a != "dsi-atomic" else "dsi-naive" for a in args[:-1]], str(copy))
    assert res.exit_code == 2 and "its record says it is dsi-atomic, not dsi-naive" in res.output, res.output


def test_adding_nothing_to_a_live_index_is_refused(small_run):
    folder, _, _ = small_run
    empty = folder / "empty.jsonl"
    empty.write_text("\n")
    res = CliRunner().invoke(app, ["index", "add", str(folder / "run"), str(empty)])
    assert res.exit_code == 2 and "no documents in this file" in res.output
    assert not (folder / "run" / "live").exists()


@pytest.mark.parametrize("sets, message", [
    (["--set", "rank.scale=5"], "rank.* is read only by a method trained with a rank_weight"),
    (["--set", "dsi.docid_encoder=trained"], "dsi.docid_encoder=trained is read only by dsi-semantic"),
    (["--set", "data.short_spans=true", "--pseudo-queries", "doc2query:x"], "data.short_spans shapes DocAsQuery"),
    (["--set", "glen.soft_scale=2"], "glen.soft_scale is read only by glen, glen-keyword; this run trains none"),
])
def test_a_setting_no_stage_reads_is_refused(scifact_small, tmp_path, sets, message):  # noqa: F811
    base = ["--dataset", str(scifact_small), "--no-baselines", "--method", "dsi-atomic", "--out", str(tmp_path / "r")]
    for dry in ([], ["--dry-run"]):
        res = _run(*base, *sets, *dry)
        assert res.exit_code == 2 and message in res.output, res.output
    assert not (tmp_path / "r").exists()
    # read where a method reads it: the same setting with its reader passes the check
    from genir.methods import check_read, make_settings

    readers = {"rank.scale": {"dsi": {"rank_weight": 0.1}}, "dsi.docid_encoder": {"methods": ["dsi-semantic"]},
               "data.short_spans": {}, "glen.soft_scale": {"methods": ["glen"]}}
    key = sets[1].split("=")[0]
    values = {"rank.scale": {"rank": {"scale": 5}}, "dsi.docid_encoder": {"dsi": {"docid_encoder": "trained"}},
              "data.short_spans": {"data": {"short_spans": True}}, "glen.soft_scale": {"glen": {"soft_scale": 2}}}[key]
    merged = {**values, **{k: {**values.get(k, {}), **v} if isinstance(v, dict) else v
                           for k, v in readers[key].items()}}
    check_read(make_settings(merged))


def test_int8_search_without_an_encoder_is_refused(scifact_small, tmp_path):  # noqa: F811
    base = ["--dataset", str(scifact_small), "--no-methods", "--baseline", "bm25", "--out", str(tmp_path / "r")]
    res = _run(*base, "--encoder-precision", "int8")
    assert res.exit_code == 2 and "search.encoder_precision=int8 is read by the encoders" in res.output, res.output
    assert not (tmp_path / "r").exists()
    from genir.methods import check_read, make_settings

    check_read(make_settings({"methods": [], "baselines": ["bm25", "dense"], "search": {"encoder_precision": "int8"}}))


def test_bf16_decoder_without_a_decoding_method_is_refused(scifact_small, tmp_path):  # noqa: F811
    base = ["--dataset", str(scifact_small), "--baseline", "bm25", "--out", str(tmp_path / "r")]
    res = _run(*base, "--no-methods", "--decoder-precision", "bf16")
    assert res.exit_code == 2 and "this run has none" in res.output, res.output
    res = _run(*base, "--method", "tied-atomic", "--method", "dsi-atomic", "--decoder-precision", "bf16")
    assert res.exit_code == 2 and "tied-atomic search(es) without one" in res.output, res.output
    assert not (tmp_path / "r").exists()
    from genir.methods import check_read, make_settings

    check_read(make_settings({"methods": ["dsi-atomic"], "search": {"decoder_precision": "bf16"}}))


def test_a_prefix_beam_without_a_beam_search_or_above_the_beam_is_refused(scifact_small, tmp_path):  # noqa: F811
    base = ["--dataset", str(scifact_small), "--baseline", "bm25", "--out", str(tmp_path / "r")]
    res = _run(*base, "--no-methods", "--prefix-beam", "5")
    assert res.exit_code == 2 and "search.prefix_beam=5 narrows" in res.output and "has none" in res.output
    res = _run(*base, "--method", "tied-atomic", "--method", "dsi-semantic", "--prefix-beam", "5")
    assert res.exit_code == 2 and "tied-atomic search(es) without one" in res.output, res.output
    res = _run(*base, "--method", "dsi-semantic", "--beam", "10", "--prefix-beam", "20")
    assert res.exit_code == 2 and "above search.beam=10" in res.output, res.output
    assert not (tmp_path / "r").exists()
    from genir.methods import check_read, make_settings

    check_read(make_settings({"methods": ["dsi-semantic"], "search": {"beam": 10, "prefix_beam": 10}}))


def test_training_settings_of_a_run_that_trains_nothing_are_refused(scifact_small, tmp_path):  # noqa: F811
    base = ["--dataset", str(scifact_small), "--no-methods", "--baseline", "bm25", "--out", str(tmp_path / "r")]
    for extra, message in ((["--epochs", "5"], "training.epochs is read by the methods that train"),
                           (["--backbone", "t5-small"], "model.backbone is read by the methods that train"),
                           (["--set", "data.lead_words=100"], "data.lead_words is read by the methods that train"),
                           (["--baseline", "dense", "--set", "dense.epochs=3"], "dense.epochs is read by the"),
                           (["--set", "dense.model=minilm"], "dense.model is read by the dense encoders")):
        res = _run(*base, *extra)
        assert res.exit_code == 2 and message in res.output and "this run has none" in res.output, res.output
        assert not (tmp_path / "r").exists()
    from genir.methods import check_read, make_settings

    # what the baselines do read: the fine-tuned encoder's training settings, the seed that holds queries out
    check_read(make_settings({"methods": [], "baselines": ["dense-trained"], "dense": {"epochs": 2},
                              "training": {"encoder_lr": 1e-4, "seed": 3}}))
    check_read(make_settings({"methods": [], "baselines": ["bm25"], "data": {"holdout": 0.2},
                              "training": {"seed": 3, "device": "cpu"}, "search": {"k": 50}}))
    with pytest.raises(ValueError, match="training.lr is read by the methods that train; this run has none"):
        check_read(make_settings({"methods": [], "baselines": ["dense-trained"], "training": {"lr": 0.1}}))
    with pytest.raises(ValueError, match="training.weight_decay is read by the methods that train and dense-trained"):
        check_read(make_settings({"methods": [], "baselines": ["bm25"], "training": {"weight_decay": 0.1}}))
    # the encoder's own learning rate and warm-up: read when it is fine-tuned (or by dense-trained), not frozen
    for key, also in (("encoder_lr", r" or by dense-trained;"), ("encoder_warmup_ratio", ";")):
        with pytest.raises(ValueError, match=rf"training.{key} is read when the encoder is fine-tuned \(--encoder "
                                             rf"full\){also} this run's encoder is frozen"):
            check_read(make_settings({"methods": ["dsi-atomic"], "training": {key: 0.2}}))
        check_read(make_settings({"methods": ["dsi-atomic"], "model": {"encoder": "full"}, "training": {key: 0.2}}))
    check_read(make_settings({"methods": ["dsi-atomic"], "baselines": ["dense-trained"],
                              "training": {"encoder_lr": 0.2}}))
    with pytest.raises(ValueError, match=r"dense.epochs is read by the fine-tuned dense encoder \(dense-trained, "
                                         r"docid_encoder=trained\); this run has none"):
        check_read(make_settings({"methods": ["dsi-atomic"], "dense": {"epochs": 2}}))


def test_method_settings_no_phase_reads_are_refused(scifact_small, tmp_path):  # noqa: F811
    (tmp_path / "t.tsv").write_text("".join(f"q{i}\td{i}\t1.0\n" for i in range(3)))
    base = ["--dataset", str(scifact_small), "--no-baselines", "--dry-run", "--out", str(tmp_path / "r")]
    for extra, message in (
            (["--method", "glen-keyword", "--set", "glen.refine_epochs=3"], "read by phase 2, which glen-keyword"),
            (["--method", "glen-keyword", "--set", "glen.soft_scale=0.5"], "read by phase 2, which glen-keyword"),
            (["--method", "glen", "--set", "glen.keyword_encoder_lr=0.001"], "this run's encoder is frozen"),
            (["--method", "rqvae", "--set", "merge.lambda_rel=0.1"], "which rqvae does not train"),
            (["--method", "tied-atomic", "--teacher-scores", "dense+bm25"], "read by tied-atomic-distill, which"),
            (["--method", "tied-atomic-distill", "--teacher-scores", "dense+bm25", "--set", "tied.negatives=5"],
             "tied-atomic-distill learns the teacher's margins"),
            (["--method", "tied-atomic-distill", "--teacher-scores", "{work}/t.tsv", "--set", "tied.teacher_depth=9"],
             "not by a teacher file"),
            (["--method", "genret", "--set", "genret.diverse_init=false", "--set", "genret.warmup_epochs=2"],
             "which genret.diverse_init=false turns off"),
            (["--method", "genret", "--set", "genret.length=2", "--set", "genret.headroom=5"],
             "genret.headroom=5.0: sizes the docid length"),
            (["--method", "dsi-atomic", "--semantic-c", "8"], "dsi.semantic_c=8: shapes semantic docids")):
        extra = [e.replace("{work}", str(tmp_path)) for e in extra]
        res = _run(*base, *extra)
        assert res.exit_code == 2 and message in res.output, res.output
    for extra in (["--method", "glen-keyword", "--method", "glen", "--set", "glen.refine_epochs=3"],
                  ["--method", "glen", "--encoder", "full", "--set", "glen.keyword_encoder_lr=0.001"],
                  ["--method", "rqvae", "--method", "merge", "--set", "merge.lambda_rel=0.1"],
                  ["--method", "tied-atomic-distill", "--teacher-scores", "dense+bm25",
                   "--set", "tied.teacher_depth=9"],
                  ["--method", "genret", "--set", "genret.diverse_init=false", "--epochs", "5"],
                  ["--method", "dsi-atomic", "--method", "dsi-semantic", "--semantic-c", "8"]):
        res = _run(*base, *extra)
        assert res.exit_code == 0, res.output
    assert not (tmp_path / "r").exists()


def test_a_beam_without_a_beam_search_is_refused(scifact_small, tmp_path):  # noqa: F811
    base = ["--dataset", str(scifact_small), "--baseline", "bm25", "--out", str(tmp_path / "r")]
    res = _run(*base, "--no-methods", "--beam", "5")
    assert res.exit_code == 2 and "search.beam=5 is the width" in res.output and "has none" in res.output
    res = _run(*base, "--method", "tied-atomic", "--beam", "5")
    assert res.exit_code == 2 and "tied-atomic rank(s) every document without one" in res.output, res.output
    assert not (tmp_path / "r").exists()
    from genir.methods import check_read, make_settings, transfer_settings

    check_read(make_settings({"methods": ["tied-atomic", "genret"], "search": {"beam": 5}}))  # genret reads it
    # a transfer keeps the source's beam where a transferred method beam-searches, and leaves it where none does
    source = tmp_path / "source"
    source.mkdir()
    (source / "config.json").write_text(json.dumps(make_settings(
        {"methods": ["tied-atomic", "genret"], "search": {"beam": 5, "decoder_precision": "bf16"}}).to_dict()))
    assert transfer_settings(source, "cisi", ["genret"]).search.beam == 5
    tied = transfer_settings(source, "cisi", ["tied-atomic"])
    assert tied.search.beam == 100 and tied.search.decoder_precision == "fp32"
    check_read(tied)
