"""The example method (``genir.methods.random_docids``): one package and one registry line make a method that
trains, searches, reports and opens itself through the shared parts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from genir.cli import app
from genir.docids import DocIdTable
from genir.evaluation import read_run
from genir.methods import GROUPS, METHODS, make_settings
from genir.methods.random_docids import random_docids
from genir.pipeline import run
from genir.retriever import Retriever
from tests.test_pipeline import _slice


def test_random_docids_are_distinct_paths_of_the_asked_shape():
    ids = [f"d{i}" for i in range(200)]
    table = random_docids(ids, codes=8, length=None, seed=0)
    assert table.codes.shape == (200, 3)  # 8^3 = 512 >= 200 > 8^2
    assert len({tuple(c) for c in table.codes}) == 200 and table.codes.min() >= 0 and table.codes.max() < 8
    assert not (random_docids(ids, 8, None, seed=1).codes == table.codes).all()  # the seed draws them
    with pytest.raises(ValueError, match="cannot hold"):
        random_docids(ids, codes=8, length=2, seed=0)


def test_the_example_method_runs_through_the_shared_parts(tmp_path_factory, shared_datasets, tiny_bert, tmp_path):
    assert "dsi-random" in METHODS and "random" in GROUPS
    res = CliRunner().invoke(app, ["methods"])
    assert res.exit_code == 0 and "dsi-random" in res.output and "random (method): codes=32" in res.output
    data = _slice(tmp_path_factory, shared_datasets, "scifact", {"train": 20, "test": 8}, 60)
    out = tmp_path / "run"
    report = run(make_settings({"data": {"dataset": str(data)}, "model": {"backbone": tiny_bert, "decoder_ff": 64},
                                "methods": ["dsi-random"], "baselines": [], "out": str(out),
                                "training": {"epochs": 2, "batch_size": 16}, "search": {"beam": 10},
                                "random": {"codes": 4}}))
    (system,) = report["systems"]
    assert system["name"] == "dsi-random" and system["metrics"]["full"]["n"] == 8 and system["train_steps"] > 0
    table = DocIdTable.load(out / "dsi-random" / "docids")
    assert table.scheme == "random" and table.codes.shape == (60, 3)  # 4^3 = 64 >= 60
    assert len(np.unique(table.codes, axis=0)) == 60
    # the folder opens itself and ranks as the run did
    expected = read_run(out / "dsi-random" / "dsi-random.trec")
    from genir.data import load_dataset

    got = Retriever.load(out / "dsi-random").batch_search(load_dataset(str(data)).split_queries("test"), 100)
    assert {q: [h.doc_id for h in hits] for q, hits in got.items()} == \
        {q: [h.doc_id for h in hits] for q, hits in expected.items()}
    assert json.loads((out / "dsi-random" / "retriever.json").read_text())["settings"]["random"]["codes"] == 4
