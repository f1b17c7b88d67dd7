"""Bad inputs are refused before any work: exit code 2, a message naming the file and line (or the setting),
no traceback, nothing written. The fast subset of ``bench/bad_inputs.py`` (which runs every case, each in
its own process), plus the checks that no file of a run folder is ever unpickled."""

from __future__ import annotations

import importlib.util
import pickle
import re
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from genir.cli import app

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bad_inputs", ROOT / "bench" / "bad_inputs.py")
bad_inputs = importlib.util.module_from_spec(_spec)
sys.modules["bad_inputs"] = bad_inputs
_spec.loader.exec_module(bad_inputs)

FAST = [c for c in bad_inputs.CASES if c.fast]


def test_the_bench_covers_at_least_sixty_inputs_of_every_kind():
    assert len(bad_inputs.CASES) >= 60
    assert {c.kind for c in bad_inputs.CASES} >= {"corpus", "queries", "qrels", "settings", "config", "run file",
                                                  "run folder", "search"}
    assert len(FAST) >= 20


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> Path:
    return bad_inputs.write_collection(tmp_path_factory.mktemp("collection") / "data")


@pytest.mark.parametrize("case", FAST, ids=[c.name for c in FAST])
def test_bad_input_is_refused_before_any_work(case, collection, tmp_path, monkeypatch):
    bad_inputs.prepare(case, tmp_path, collection, None)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, case.args(tmp_path))
    output = result.output + (result.stderr if result.stderr_bytes is not None else "")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback: the test shows it
    ok, why = bad_inputs.judge(case, tmp_path, result.exit_code, output, {})
    assert ok, f"{why}\n{output}"


def _evil_bytes(marker: Path) -> bytes:
    return pickle.dumps(bad_inputs.Evil(str(marker)))


def test_the_evil_pickle_does_run_code_when_unpickled(tmp_path):
    """The bait works: unpickling it writes the marker (so the tests below would see an unpickling)."""
    pickle.loads(_evil_bytes(tmp_path / "PWNED"))
    assert (tmp_path / "PWNED").exists()


def test_a_pickle_in_a_model_folder_is_refused_and_not_executed(tiny_bert, tmp_path):
    from genir.data import DataError
    from genir.models import DocidSeq2Seq, ModelConfig

    model = DocidSeq2Seq(ModelConfig(n_codes=4, backbone=tiny_bert, decoder_heads=2, decoder_ff=32))
    model.save(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(_evil_bytes(tmp_path / "PWNED"))
    with pytest.raises(DataError, match=re.escape("model.safetensors: not a readable safetensors file")):
        DocidSeq2Seq.load(tmp_path / "m")
    assert not (tmp_path / "PWNED").exists()


def test_a_pickle_as_a_checkpoint_is_refused_and_not_executed(tmp_path):
    from genir.training.checkpoint import CheckpointError, load_latest

    for name in ("step-00000001", "step-00000002"):
        (tmp_path / "ck" / name).mkdir(parents=True)
        (tmp_path / "ck" / name / "state.safetensors").write_bytes(_evil_bytes(tmp_path / "PWNED"))
        (tmp_path / "ck" / name / "meta.json").write_text("{}")
    torch.save({"x": _evil_bytes(tmp_path / "PWNED")}, tmp_path / "ck" / "last.pt")  # an old-style checkpoint
    with pytest.raises(CheckpointError, match="no checkpoint reads back"):
        load_latest(tmp_path / "ck")
    assert not (tmp_path / "PWNED").exists()


def test_no_loader_in_the_package_can_unpickle():
    """torch.load, pickle and np.load(allow_pickle=True) appear nowhere in genir's source."""
    src = ROOT / "src" / "genir"
    pattern = re.compile(r"torch\.load\(|import pickle|pickle\.load|allow_pickle=True|weights_only=False")
    hits = [f"{p.relative_to(src)}:{i}" for p in src.rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not hits, hits
