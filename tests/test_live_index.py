"""The live index: documents added after training are searchable at once in every method that can take
one, a removed document never appears in any method's results, changes persist atomically in RUN/live/."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from genir.cli import app
from genir.data.collection import Document
from genir.live import LiveIndex, LiveIndexError
from tests.conftest import LIVE_METHODS, REFUSING


@pytest.fixture()
def fresh_run(live_run, tmp_path):
    """A copy of the trained run per test (changes must not leak between tests)."""
    copy = tmp_path / "run"
    shutil.copytree(live_run, copy)
    return copy


def test_a_finished_run_keeps_its_models_and_no_training_checkpoints(live_run):
    """Every method's model is saved and its checkpoints are gone (the run folder is copied, served and
    sent around; checkpoints are several times the model's size and nothing resumes from them)."""
    for name in LIVE_METHODS + REFUSING:
        assert (live_run / name / "model" / "genir_model.json").exists(), name
        assert not [p for p in (live_run / name).rglob("step-*") if p.is_dir()], name
    assert (live_run / "genret" / "progressive" / "codes.npy").exists()  # GenRet's progress is kept


def _everything(index: LiveIndex, name: str, query: str) -> list[str]:
    """Every document the searcher can return for a query: a beam as wide as the docids, k over the corpus."""
    searcher = index.searcher(name)
    inner = searcher.inner
    if hasattr(inner, "with_beam"):
        searcher.inner = inner.with_beam(10_000)
    try:
        return [h.doc_id for h in searcher.search(query, k=10_000)]
    finally:
        searcher.inner = inner


NEW = [Document("new-1", "Vitamin D supplements change bone mineral density in elderly women.", "Vitamin D"),
       Document("new-2", "Graphene transistors switch at terahertz frequencies.", "Graphene")]


def test_added_documents_are_searchable_at_once_and_persist(fresh_run):
    index = LiveIndex(fresh_run)
    before = {name: _everything(index, name, "vitamin D bone density") for name in index.names}
    report = index.add(NEW)
    assert report["dsi-atomic"]["refused"].startswith("atomic docids are output units")
    for name in LIVE_METHODS:
        assert report[name]["documents"] == 2, (name, report[name])
    for name in ["bm25", "dense", *LIVE_METHODS]:  # the opened searchers follow the change at once
        found = _everything(index, name, "vitamin D bone density")
        assert "new-1" in found and "new-1" not in before[name], name
    assert "new-1" not in _everything(index, "dsi-atomic", "vitamin D bone density")
    # BM25 puts the new document first for its own words
    assert index.searcher("bm25").search("vitamin D supplements bone mineral density elderly", 1)[0].doc_id == "new-1"
    # persisted: a new process (a fresh LiveIndex) sees the same corpus and docids
    again = LiveIndex(fresh_run)
    assert {d.id for d in again.corpus()} == {d.id for d in index.corpus()}
    for name in LIVE_METHODS:
        table, arrays = again.table(name)
        assert "new-1" in table.doc_ids and len(table) == len(index.corpus())
        assert all(len(a) == len(table) for a in arrays.values())
    with pytest.raises(LiveIndexError, match="already in the index"):
        again.add([NEW[0]])


def test_a_removed_document_never_appears_in_any_result(fresh_run):
    index = LiveIndex(fresh_run)
    index.add(NEW)
    query = "vitamin D bone density"
    top = [h.doc_id for h in index.searcher("bm25").search(query, 5)]
    victims = [next(d for d in top if d in index.collection.corpus), "new-2"]  # a trained document, an added one
    for name in index.names:  # opened before the removal: they must follow it
        index.searcher(name)
    index.remove(victims)
    for idx in (index, LiveIndex(fresh_run)):  # the live service, and a new process
        for name in idx.names:
            for q in (query, "graphene terahertz transistors", idx.collection.corpus[victims[0]].full_text):
                found = _everything(idx, name, q)
                assert not set(victims) & set(found), (name, q)
        assert not set(victims) & {d.id for d in idx.corpus()}
        for name in LIVE_METHODS + REFUSING:
            assert not set(victims) & set(idx.table(name)[0].doc_ids), name
    with pytest.raises(LiveIndexError, match="not in the index"):
        index.remove(["new-2"])
    # added again on purpose, it is back (and only then)
    index.add([NEW[1]])
    assert "new-2" in _everything(index, "bm25", "graphene terahertz")


def test_a_failed_change_leaves_the_index_as_it_was(fresh_run):
    import genir.methods.genret as genret

    index = LiveIndex(fresh_run)
    index.add([NEW[0]])
    state = (fresh_run / "live" / "state.json").read_text()

    def broken(new):
        raise RuntimeError("disk on fire")

    method = genret.METHODS[0]
    method.add_docids = broken  # on the registered instance only
    try:
        with pytest.raises(RuntimeError):
            index.add([NEW[1]])
    finally:
        del method.add_docids
    assert (fresh_run / "live" / "state.json").read_text() == state
    assert "new-2" not in {d.id for d in LiveIndex(fresh_run).corpus()}
    assert "new-2" not in {d.id for d in index.corpus()}


def test_cli_index_add_remove_status_and_errors(fresh_run, tmp_path):
    runner = CliRunner()
    docs = tmp_path / "docs.jsonl"
    docs.write_text("\n".join(json.dumps({"_id": d.id, "title": d.title, "text": d.text}) for d in NEW) + "\n")
    res = runner.invoke(app, ["index", "add", str(fresh_run), str(docs)])
    assert res.exit_code == 0, res.output
    assert "dsi-atomic: not indexed" in res.output and "glen: 2 documents" in res.output
    res = runner.invoke(app, ["search", str(fresh_run / "bm25-none"), "x"])  # not a method folder
    assert res.exit_code == 2
    res = runner.invoke(app, ["index", "remove", str(fresh_run), "new-1"])
    assert res.exit_code == 0, res.output
    status = json.loads(runner.invoke(app, ["index", "status", str(fresh_run)]).output)
    assert status["added"] == 1 and status["removed"] == 1  # new-2 is live; new-1 was withdrawn
    assert status["methods"]["genret"]["indexed"] == status["documents"]
    assert status["methods"]["dsi-atomic"]["pending"] == 1 and not status["methods"]["dsi-atomic"]["can_add"]
    res = runner.invoke(app, ["search", str(fresh_run / "genret"), "vitamin D bone", "--k", "100", "--beam", "1000"])
    assert res.exit_code == 0 and "new-1" not in res.output and "new-2" in res.output
    # bad input: file and line, exit code 2, no traceback, nothing written
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"_id": "x1", "text": "fine"}) + "\n{broken\n")
    before = (fresh_run / "live" / "state.json").read_text()
    res = runner.invoke(app, ["index", "add", str(fresh_run), str(bad)])
    assert res.exit_code == 2 and f"{bad}:2" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["index", "remove", str(fresh_run), "no-such-doc"])
    assert res.exit_code == 2 and "not in the index" in res.output
    assert (fresh_run / "live" / "state.json").read_text() == before


def test_a_folder_without_an_optional_per_document_file_still_opens(fresh_run):
    """A GenRet folder made before d_T was kept: the live index opens it (documents sharing a docid in corpus
    order, with a warning) and still adds documents to it."""
    (fresh_run / "genret" / "doc_states.npy").unlink()
    index = LiveIndex(fresh_run, ["genret"], baselines=())
    with pytest.warns(UserWarning, match="corpus order"):
        index.searcher("genret")
    report = index.add([NEW[0]])
    assert report["genret"]["documents"] == 1
    assert "new-1" in _everything(index, "genret", "vitamin D bone density")
