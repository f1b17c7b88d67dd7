"""Settings declared once: --epochs / --lr / --batch-size reach every training phase of every method, and
``genir run --dry-run`` counts the optimiser steps each phase then takes, writing nothing."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from genir.cli import app
from genir.methods import make_settings
from tests.test_pipeline import _slice


@pytest.fixture(scope="module")
def scifact_small(tmp_path_factory, shared_datasets):
    return _slice(tmp_path_factory, shared_datasets, "scifact", {"train": 30, "test": 10}, 80)


def test_training_flags_reach_every_phase_of_every_method():
    s = make_settings({})
    s.set("training.epochs", "2")
    s.set("training.lr", "0.002")
    s.set("training.batch_size", "8")
    r = s.resolved()
    # GenRet: per progressive step, its warm-up a tenth of it, and the fit; GLEN both phases; MERGE's RQ-VAE
    assert (r.genret.epochs, r.genret.warmup_epochs, r.genret.fit_epochs) == (2, 0.2, 2)
    assert (r.glen.keyword_epochs, r.glen.refine_epochs, r.merge.epochs) == (2, 2, 2)
    assert r.genret.lr == r.glen.lr == r.merge.lr == r.training.lr == 0.002
    assert r.genret.batch_size == r.glen.batch_size == r.merge.batch_size == r.training.batch_size == 8
    # unset: each phase keeps its own default; a phase's own setting is more specific than the flag
    d = make_settings({"training": {"epochs": 5}, "glen": {"refine_epochs": 3}}).resolved()
    assert (d.glen.keyword_epochs, d.glen.refine_epochs, d.genret.warmup_epochs) == (5, 3, 0.5)
    d = make_settings({}).resolved()
    assert (d.training.epochs, d.genret.epochs, d.genret.warmup_epochs, d.glen.refine_epochs, d.merge.epochs,
            d.genret.lr, d.glen.batch_size) == (30, 30, 3, 10, 300, 5e-4, 32)


def test_dry_run_writes_nothing_and_its_step_counts_are_what_training_takes(scifact_small, tiny_bert, tmp_path):
    out = tmp_path / "run"
    args = ["run", "--dataset", str(scifact_small), "--backbone", tiny_bert, "--no-baselines", "--method", "genret",
            "--method", "glen", "--method", "merge", "--epochs", "1", "--batch-size", "9", "--beam", "5",
            "--out", str(out), "--set", "genret.codes=8", "--set", "merge.codes=8", "--set", "merge.levels=2",
            "--set", "merge.hidden=32,16", "--set", "model.decoder_ff=64"]
    res = CliRunner().invoke(app, [*args, "--dry-run"])
    assert res.exit_code == 0, res.output
    assert not out.exists()  # nothing written
    assert "Eq. 11 (each progressive step)" in res.output and "phase 2 (ranking refinement)" in res.output

    from genir.dry_run import plan

    settings = make_settings({"data": {"dataset": str(scifact_small)}, "model": {"backbone": tiny_bert,
                              "decoder_ff": 64}, "baselines": [], "methods": ["genret", "glen", "merge"],
                              "out": str(out), "training": {"epochs": 1, "batch_size": 9}, "search": {"beam": 5},
                              "genret": {"codes": 8}, "merge": {"codes": 8, "levels": 2, "hidden": [32, 16]}})
    planned = {s["name"]: s for s in plan(settings)["stages"]}
    for stage in planned.values():
        assert stage["status"] == "new"
        assert all(p["epochs"] == (0.1 if p["name"].startswith("warm-up") else 1) for p in stage["phases"])
        assert all(p["batch_size"] == 9 for p in stage["phases"])
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    report = {s["name"]: s for s in json.loads((out / "report.json").read_text())["systems"]}
    steps = {name: [p["steps"] for p in s["phases"]] for name, s in planned.items()}
    genret = json.loads((out / "genret" / "train.json").read_text())
    prog = genret["progressive"]
    assert [e["warmup"]["steps"] for e in prog] == [steps["genret"][0] // len(prog)] * len(prog)
    assert [e["train"]["steps"] for e in prog] == [steps["genret"][1] // len(prog)] * len(prog)
    assert report["genret"]["train_steps"] == sum(steps["genret"])
    assert report["glen"]["train_steps"] == sum(steps["glen"])  # phase 2 took --epochs too, not its 10
    assert report["merge"]["rqvae"]["steps"] == steps["merge"][0]  # the RQ-VAE took --epochs, not its 300
    assert report["merge"]["train_steps"] == steps["merge"][1]
    # the report's training plot draws every phase of every method, under the names the dry run gives them
    from genir.evaluation.report import training_phases

    drawn = {m: [name for name, *_ in training_phases(json.loads((out / m / "train.json").read_text()))]
             for m in ("genret", "glen", "merge")}
    assert drawn["genret"] == [f"step {t} {part}" for t in range(1, len(prog) + 1) for part in ("warm-up", "Eq. 11")
                               ] + ["fit (seq2seq)"]
    assert drawn["glen"] == ["phase 1 (keyword IDs)", "phase 2 (ranking refinement)"]
    assert drawn["merge"] == ["RQ-VAE", "retriever"]
    assert (out / "training_loss.png").stat().st_size > 10_000
    # the dry run again, over the run it planned: every stage reused
    again = {s["name"]: s["status"] for s in plan(settings)["stages"]}
    assert set(again.values()) == {"reused"}


def test_a_searcher_gets_the_runs_seed_not_a_copy_of_it():
    # GLEN's random tie-break drew from a copy of the seed (glen.seed) that the search path never filled in
    from pathlib import Path

    from genir.methods import open_searcher
    from genir.methods.base import Method

    class Probe(Method):
        name, description, docids, objective_text, search_mode = "probe", "", "", "", ""

        def open_searcher(self, req):
            return req

    req = open_searcher(Probe(), make_settings({"training": {"seed": 5}}), None, None, Path("folder"))
    assert req.seed == 5


def test_redo_and_fresh_recompute_an_unchanged_stage(scifact_small, tmp_path):
    # --help says --fresh recomputes every stage and --redo NAME that stage: an unchanged one too
    from genir.dry_run import plan
    from genir.pipeline import run

    settings = make_settings({"data": {"dataset": str(scifact_small)}, "methods": [], "baselines": ["bm25"],
                              "out": str(tmp_path / "r")})
    run(settings)
    record = tmp_path / "r" / "baselines" / "bm25.stage.json"
    first = record.stat().st_mtime_ns
    assert [s["status"] for s in plan(settings)["stages"]] == ["reused"]
    assert [s["status"] for s in plan(settings, fresh=True)["stages"]] == ["recomputed"]
    run(settings)
    assert record.stat().st_mtime_ns == first  # reused
    run(settings, redo={"bm25"})
    assert record.stat().st_mtime_ns != first  # recomputed
    second = record.stat().st_mtime_ns
    run(settings, fresh=True)
    assert record.stat().st_mtime_ns != second


def test_every_run_flag_is_a_setting_and_reaches_it(monkeypatch):
    """``genir run``'s flags are made from the settings groups: each one sets the key it is declared on (a flag
    the command accepted and then dropped, or one mapped to another key, fails here)."""
    import genir.pipeline
    from genir.cli.common import run_flags

    seen = {}
    monkeypatch.setattr(genir.pipeline, "run", lambda settings, redo, fresh: seen.update(s=settings) or {"dataset": ""})
    monkeypatch.setattr("genir.cli.run._show_report", lambda *a: None)
    flags = run_flags()
    assert {"epochs", "lr", "batch_size", "dataset", "method", "beam"} <= set(flags)
    for name, (key, decl, tp, _help) in flags.items():
        settings = make_settings({})
        default = settings.lookup(key)[0] if "." in key else getattr(settings, key)
        args, want = _flag_value(name, key, tp, default)
        seen.clear()
        res = CliRunner().invoke(app, ["run", *[a for v in args for a in (decl, v)]])
        assert res.exit_code == 0, (decl, res.output)
        got = seen["s"].lookup(key)[0] if "." in key else getattr(seen["s"], key)
        assert got == want != default, (decl, got, want, default)


def _flag_value(name, key, tp, default):
    """Command-line text for a flag and the value it must give (not the default)."""
    import dataclasses
    import typing

    from genir.methods import GROUPS

    if name in ("method", "baseline"):
        value = ["dsi-atomic", "glen"] if name == "method" else ["bm25"]
        return value, value
    group, _, field_name = key.partition(".")
    meta = {f.name: f.metadata for f in dataclasses.fields(GROUPS[group])}[field_name] if group in GROUPS else {}
    base = ([a for a in typing.get_args(tp) if a is not type(None)] or [tp])[0]
    if meta.get("choices"):
        value = next(c for c in meta["choices"] if c != default)
        return [value], value
    if base is float:
        return ["0.25"], 0.25
    if base is int:
        return [str((default or 1) + 3)], (default or 1) + 3
    return [f"x-{name}"], f"x-{name}"


@pytest.mark.parametrize("key, value, message", [
    ("glen.tau_floor", 2.0, "must be at most 1"), ("glen.tau_floor", 0.0, "must be greater than 0"),
    ("data.holdout", 1.0, "must be less than 1"), ("training.epochs", -1.0, "must be greater than 0")])
def test_a_number_outside_its_declared_range_is_refused(key, value, message):
    from genir.settings import SettingsError

    group, name = key.split(".")
    with pytest.raises(SettingsError, match=f"{key}: {message}"):
        make_settings({"methods": ["glen"], group: {name: value}})
    make_settings({"methods": ["glen"], group: {name: 0.5}})  # inside the range: taken


def test_a_changed_default_of_an_added_setting_tells_stages_made_before_from_stages_made_after():
    """genret.rank_weight was added at 0 and later defaults to 0.01: a stage made at the new default must not
    match one made before (whose fingerprint lacks the key), and a record without it reads as made (0)."""
    from genir.methods import check_read, get_method, settings_from
    from genir.settings import SettingsError
    from genir.stages import method_fingerprint

    new = method_fingerprint(make_settings({"methods": ["genret"]}), "genret", {}).train
    old = method_fingerprint(make_settings({"methods": ["genret"], "genret": {"rank_weight": 0.0}}), "genret", {}).train
    assert new["genret.rank_weight"] == 0.01 and "rank.scale" in new
    assert "genret.rank_weight" not in old and "rank.scale" not in old  # as a folder made before the setting
    values = make_settings({"methods": ["genret"]}).to_dict()
    del values["genret"]["rank_weight"]
    assert settings_from(values, "config.json").genret.rank_weight == 0.0
    assert make_settings({"methods": ["genret"]}).genret.rank_weight == 0.01
    # the loss is the fit stage's: with no fit, nothing reads the rank group, and setting it is refused
    check_read(make_settings({"methods": ["genret"], "rank": {"scale": 5}}))
    no_fit = make_settings({"methods": ["genret"], "genret": {"fit_epochs": 0}, "rank": {"scale": 5}})
    assert get_method("genret").rank_weight(no_fit.genret) == 0.0
    with pytest.raises(SettingsError, match="rank.* is read only by a method trained with a rank_weight"):
        check_read(no_fit)
