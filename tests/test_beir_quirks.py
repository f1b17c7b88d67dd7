"""Real BEIR releases as BEIR evaluates them: ArguAna's judged documents missing from the corpus are kept and
counted, and a query that is itself a document loses its own id from its ranking (ignore_identical_ids)."""

from __future__ import annotations

import json
import re

import pytest

from genir.data import DataError, load_dataset
from genir.methods import make_settings
from genir.workspace import Workspace
from tests.test_data import GOOD_CORPUS, GOOD_QUERIES, write_beir


def _workspace(shared_datasets, tmp_path, dataset: str, **data) -> Workspace:
    return Workspace(make_settings({"data": {"dataset": dataset, "data_dir": str(shared_datasets), **data},
                                    "out": str(tmp_path / "run")}))


def test_arguana_missing_judged_documents_are_kept_and_counted(shared_datasets):
    coll = load_dataset("arguana", shared_datasets)
    missing = coll.missing_judged["test"]
    assert len(missing) == 5 and all(d not in coll.corpus for _, d in missing)
    q, d = missing[0]
    assert coll.qrels["test"][q][d] > 0  # kept in the qrels: it counts against recall and nDCG


def test_identical_ids_auto_drops_only_queries_that_are_their_document(shared_datasets, tmp_path):
    ws = _workspace(shared_datasets, tmp_path, "arguana")
    assert len(ws.identical_ids) == 1298
    notes = ws.data_notes()
    assert any("5 judgement(s)" in n for n in notes) and any("1298 test queries" in n for n in notes)
    assert not _workspace(shared_datasets, tmp_path, "arguana", ignore_identical_ids="never").identical_ids
    # Cranfield numbers queries and documents alike (1..225, 1..1400): the ids coincide, the texts do not
    assert not _workspace(shared_datasets, tmp_path, "cranfield").identical_ids
    assert len(_workspace(shared_datasets, tmp_path, "cranfield", ignore_identical_ids="always").identical_ids) == 225


def test_arguana_run_file_holds_no_query_own_id_and_evaluates(shared_datasets, tmp_path):
    from genir.pipeline import run

    settings = make_settings({"data": {"dataset": "arguana", "data_dir": str(shared_datasets), "max_test_queries": 30},
                              "methods": [], "baselines": ["bm25"], "out": str(tmp_path / "run")})
    report = run(settings)
    lines = (tmp_path / "run" / "baselines" / "bm25.trec").read_text().splitlines()
    own = [line for line in lines if line.split()[0] == line.split()[2]]
    assert lines and not own
    assert report["systems"][0]["metrics"]["full"]["R@1"] > 0  # with its own id kept, each query finds itself first
    assert "ignore_identical_ids" in (tmp_path / "run" / "report.md").read_text()
    keep = make_settings({**settings.to_dict(), "out": str(tmp_path / "keep")})
    keep.data.ignore_identical_ids = "never"
    assert run(keep)["systems"][0]["metrics"]["full"]["R@1"] == 0.0
    assert json.loads((tmp_path / "run" / "report.json").read_text())["data_notes"]


def test_many_missing_judged_documents_are_refused_with_a_unicode_hint(tmp_path):
    corpus = [{"_id": "caf\u00e9", "text": "coffee"}, *GOOD_CORPUS]
    folder = write_beir(tmp_path / "nfd", corpus, GOOD_QUERIES, {"test": [("q1", "cafe\u0301", 1), ("q1", "d1", 1)]})
    with pytest.raises(DataError) as e:
        load_dataset(str(folder))
    assert "test.tsv:2" in str(e.value) and "Unicode NFC form" in str(e.value)


def test_every_document_gets_an_indexing_text_of_its_own_with_short_spans(shared_datasets, tmp_path):
    """Short documents get no random span by default (only their leading text, the whole of them); with
    data.short_spans every document of two words or more gets one, and the report says how many have none."""
    from genir.data.collection import Document
    from genir.data.pseudo_queries import DocAsQuery

    docs = [Document("a", "one two three four five six"), Document("b", "alone"),
            Document("c", " ".join(map(str, range(100))))]
    plain, short = DocAsQuery(8, 1).generate(docs), DocAsQuery(8, 1, short_spans=True).generate(docs)
    assert plain["a"] == ["one two three four five six"] and len(plain["c"]) == len(short["c"]) == 2
    assert len(short["a"]) == 2 and len(short["a"][1].split()) == 3 and short["a"][1] in docs[0].text
    assert short["b"] == ["alone"]

    def alone(**data) -> int:
        ws = _workspace(shared_datasets, tmp_path, "cranfield", train_split="split_train", test_split="split_test",
                        **data)
        note = next(n for n in ws.data_notes({"dsi-atomic": ws}) if n.startswith("Indexing texts of dsi-atomic"))
        return int(re.search(r"([\d,]+) have no other", note).group(1).replace(",", ""))

    before, after = alone(), alone(short_spans=True)
    few_words = sum(len(d.full_text.split()) < 2 for d in load_dataset("cranfield", shared_datasets).corpus.values())
    assert before > after == few_words
