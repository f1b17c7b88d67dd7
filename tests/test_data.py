"""Loaders reject each bad input with a message naming file, line and problem; registry and splits."""

from __future__ import annotations

import json
import threading
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from genir.data import DataError, DocAsQuery, load_beir, load_dataset, load_pseudo_queries, seen_unseen
from genir.data.collection import Document
from genir.data.registry import resolve_dataset
from genir.data.splits import hold_out


def write_beir(folder: Path, corpus: list, queries: list, qrels: dict[str, list[tuple]] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in corpus))
    (folder / "queries.jsonl").write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in queries))
    (folder / "qrels").mkdir(exist_ok=True)
    for split, rows in (qrels or {}).items():
        (folder / "qrels" / f"{split}.tsv").write_text(
            "query-id\tcorpus-id\tscore\n" + "".join("\t".join(map(str, r)) + "\n" for r in rows))
    return folder


GOOD_CORPUS = [{"_id": "d1", "title": "T1", "text": "alpha beta"}, {"_id": "d2", "text": "gamma"},
               {"_id": "d3", "text": ""}]
GOOD_QUERIES = [{"_id": "q1", "text": "alpha?"}, {"_id": "q2", "text": "gamma?"}]


def test_loads_good_collection_with_grades(tmp_path):
    c = load_beir(write_beir(tmp_path / "ok", GOOD_CORPUS, GOOD_QUERIES,
                             {"test": [("q1", "d1", 2), ("q1", "d2", 0), ("q2", "d2", 1)]}))
    assert c.doc_ids == ["d1", "d2", "d3"]
    assert c.corpus["d1"].full_text == "T1 alpha beta"
    assert c.corpus["d3"].text == ""  # empty documents (Cranfield 471, 995) are allowed
    assert c.qrels["test"]["q1"] == {"d1": 2, "d2": 0}
    assert set(c.split_queries("test")) == {"q1", "q2"}


@pytest.mark.parametrize("corpus, queries, qrels, where, message", [
    (['{"_id": "d1", "text": "x"}', '{"_id": "d2", "text": '], GOOD_QUERIES, None, "corpus.jsonl:2",
     "malformed JSON"),
    ([{"_id": "d1", "text": "x"}, {"text": "no id"}], GOOD_QUERIES, None, "corpus.jsonl:2", "no '_id'"),
    ([{"_id": "d1", "title": "no text"}], GOOD_QUERIES, None, "corpus.jsonl:1", "no 'text'"),
    ([{"_id": "d1", "text": "a"}, {"_id": "d1", "text": "b"}], GOOD_QUERIES, None, "corpus.jsonl:2",
     "duplicate document id 'd1'"),
    ([], GOOD_QUERIES, None, "corpus.jsonl", "the corpus is empty"),
    (GOOD_CORPUS, [{"_id": "q1", "text": "a"}, {"_id": "q1", "text": "b"}], None, "queries.jsonl:2",
     "duplicate query id 'q1'"),
    (GOOD_CORPUS, GOOD_QUERIES, {"test": [("q1", "nope", 1)]}, "test.tsv:2", "corpus id 'nope' is not in corpus"),
    (GOOD_CORPUS, GOOD_QUERIES, {"test": [("q9", "d1", 1)]}, "test.tsv:2", "query id 'q9' is not in queries"),
    (GOOD_CORPUS, GOOD_QUERIES, {"test": [("q1", "d1", "high")]}, "test.tsv:2", "grade 'high' is not a number"),
    (GOOD_CORPUS, GOOD_QUERIES, {"test": [("q1", "d1", "1.7")]}, "test.tsv:2", "grade '1.7' is not a finite integer"),
    (GOOD_CORPUS, GOOD_QUERIES, {"test": [("q1", "d1", "inf")]}, "test.tsv:2", "grade 'inf' is not a finite integer"),
    (GOOD_CORPUS, GOOD_QUERIES, {"test": [("q1", "d1", "nan")]}, "test.tsv:2", "grade 'nan' is not a finite integer"),
    (GOOD_CORPUS, GOOD_QUERIES, {"test": [("q1", "d1", 0), ("q2", "d2", 0)]}, "test.tsv", "no relevant judgement"),
    (GOOD_CORPUS, GOOD_QUERIES, {"test": []}, "test.tsv", "no judgements"),
    ([{"_id": "d 1", "text": "x"}], GOOD_QUERIES, None, "corpus.jsonl:1", "contains whitespace"),
    ([{"_id": "d1", "text": "x", "title": ["a", "list"]}], GOOD_QUERIES, None, "corpus.jsonl:1",
     "'title' must be a string"),
    ([{"_id": "d1", "text": ""}, {"_id": "d2", "text": " "}], GOOD_QUERIES, None, "corpus.jsonl",
     "every document is empty"),
    (GOOD_CORPUS, [{"_id": "q1", "text": "a"}, {"_id": "q2", "text": ""}], None, "queries.jsonl:2",
     "query 'q2' has an empty text"),
    (GOOD_CORPUS, GOOD_QUERIES, {"test": [("q1", "d1")]}, "test.tsv:2", "expected 3 tab-separated columns"),
    (GOOD_CORPUS, GOOD_QUERIES, {"test": [("q1", "d1", 1), ("q1", "d1", 2)]}, "test.tsv:3", "duplicate judgement"),
])
def test_bad_input_is_rejected_with_file_line_and_problem(tmp_path, corpus, queries, qrels, where, message):
    folder = write_beir(tmp_path / "bad", corpus, queries, qrels)
    with pytest.raises(DataError) as err:
        load_beir(folder)
    text = str(err.value)
    assert where in text and message in text, text


@pytest.mark.parametrize("raw, message", [
    ('{"_id": "d1", "text": "caf\u00e9"}\n'.encode("utf-16"), "corpus.jsonl:1: the file is UTF-16"),
    ('{"_id": "d1", "text": "ok"}\n{"_id": "d2", "text": "caf\u00e9"}\n'.encode("latin-1"),
     "corpus.jsonl:2: not UTF-8: byte 0xe9 at column 27"),
    (bytes(range(256)) * 4, "corpus.jsonl:1: holds NUL bytes"),
])
def test_bytes_that_are_not_utf8_are_named_with_file_and_line(tmp_path, raw, message):
    folder = write_beir(tmp_path / "enc", GOOD_CORPUS, GOOD_QUERIES)
    (folder / "corpus.jsonl").write_bytes(raw)
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        load_beir(folder)


def test_a_dataset_name_resolves_to_one_place(tmp_path, monkeypatch, shared_datasets):
    """A ./scifact folder in the working directory does not shadow --data-dir, and an incomplete --data-dir
    copy is an error, not a fall-back to the $GENIR_DATASETS mirror."""
    monkeypatch.setenv("GENIR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GENIR_DATASETS", str(shared_datasets))
    monkeypatch.chdir(tmp_path)
    write_beir(tmp_path / "scifact", GOOD_CORPUS, GOOD_QUERIES, {"test": [("q1", "d1", 1)]})  # a stray ./scifact
    mine = write_beir(tmp_path / "mine" / "scifact", GOOD_CORPUS[:2], GOOD_QUERIES, {"test": [("q1", "d2", 1)]})
    c = load_dataset("scifact", data_dir=tmp_path / "mine")
    assert c.path == mine.resolve() and len(c.corpus) == 2
    assert len(load_dataset("scifact").corpus) == 5183  # the mirror, not ./scifact
    assert len(load_dataset("./scifact").corpus) == 3  # a path is read where it points
    (mine / "queries.jsonl").unlink()
    with pytest.raises(DataError, match="incomplete dataset folder: no queries.jsonl"):
        load_dataset("scifact", data_dir=tmp_path / "mine")
    with pytest.raises(DataError, match="no such dataset folder under --data-dir"):
        load_dataset("cranfield", data_dir=tmp_path / "mine")
    # the content hash tells two copies of one collection from two collections
    assert load_dataset("./scifact").content_hash != c.content_hash


def test_missing_files(tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        load_beir(tmp_path / "nothing")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "corpus.jsonl").write_text('{"_id": "a", "text": "x"}\n')
    with pytest.raises(DataError, match="queries.jsonl: file is missing"):
        load_beir(tmp_path / "half")


def test_registry_order_and_offline_mirror(tmp_path, monkeypatch, shared_datasets):
    monkeypatch.setenv("GENIR_CACHE", str(tmp_path / "cache"))
    mine = write_beir(tmp_path / "mine" / "scifact", GOOD_CORPUS, GOOD_QUERIES)
    assert resolve_dataset("scifact", data_dir=tmp_path / "mine") == mine  # --data-dir first
    monkeypatch.setenv("GENIR_DATASETS", str(shared_datasets))
    assert resolve_dataset("scifact") == shared_datasets / "scifact"  # then the mirror
    monkeypatch.delenv("GENIR_DATASETS")
    with pytest.raises(DataError, match="downloading is off"):
        resolve_dataset("scifact", download=False)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_fetch_from_http_archive_into_cache(tmp_path, monkeypatch):
    src = write_beir(tmp_path / "src" / "tiny", GOOD_CORPUS, GOOD_QUERIES, {"test": [("q1", "d1", 1)]})
    serve = tmp_path / "www"
    serve.mkdir()
    with zipfile.ZipFile(serve / "tiny.zip", "w") as z:
        for p in src.rglob("*"):
            z.write(p, Path("tiny") / p.relative_to(src))
    (serve / "broken.zip").write_text("not a zip")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(serve)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("GENIR_CACHE", str(tmp_path / "cache"))
        monkeypatch.delenv("GENIR_DATASETS", raising=False)
        monkeypatch.setenv("GENIR_BEIR_URL", f"http://127.0.0.1:{server.server_port}/{{name}}.zip")
        c = load_dataset("tiny")
        assert c.doc_ids == ["d1", "d2", "d3"]
        assert (tmp_path / "cache" / "datasets" / "tiny" / "corpus.jsonl").exists()
        with pytest.raises(DataError, match="not a zip"):
            load_dataset("broken")
        with pytest.raises(DataError, match="could not download"):
            load_dataset("missing")
        # nothing half-written: failed fetches leave no folder and no temporary behind
        assert sorted(p.name for p in (tmp_path / "cache" / "datasets").iterdir()) == ["tiny"]
    finally:
        server.shutdown()


def test_seen_unseen_and_holdout():
    train = {"a": {"d1": 1}, "b": {"d2": 1, "d9": 0}}
    test = {"x": {"d1": 1}, "y": {"d3": 1}, "z": {"d9": 1}, "w": {"d4": 0}}
    seen, unseen = seen_unseen(train, test)
    assert seen == {"x"}
    assert unseen == {"y", "z"}  # d9 was judged non-relevant for b, so z is unseen
    qrels = {f"q{i}": {"d": 1} for i in range(10)}
    kept, held = hold_out(qrels, 0.3, seed=1)
    assert len(held) == 3 and not set(kept) & set(held) and set(kept) | set(held) == set(qrels)


def test_seen_unseen_on_scifact(shared_datasets):
    c = load_dataset("scifact", shared_datasets)
    seen, unseen = seen_unseen(c.qrels["train"], c.qrels["test"])
    assert len(seen) + len(unseen) == 300
    assert 0 < len(unseen) < 300


def test_lead_words_sets_the_leading_span_alone(tmp_path, shared_datasets):
    """data.lead_words: the document's leading span (the text training reads for it) gets its own length;
    the random spans stay as they were; past the document's length it is the whole text search reads."""
    from genir.data.pseudo_queries import lead_spans
    from genir.methods import make_settings
    from genir.workspace import Workspace

    doc = Document("d1", " ".join(f"w{i}" for i in range(100)))
    short = DocAsQuery(span_words=10, n_random=2, seed=3).generate([doc])["d1"]
    long = DocAsQuery(span_words=10, n_random=2, seed=3, lead_words=40).generate([doc])["d1"]
    assert long[0] == " ".join(f"w{i}" for i in range(40)) and long[1:] == short[1:]
    assert lead_spans([doc], 10, 40) == [long[0]] and lead_spans([doc], 10) == [short[0]]
    ws = Workspace(make_settings({"data": {"dataset": "scifact", "lead_words": 100000}}), tmp_path)
    examples = ws.examples()
    assert ws.lead_texts(ws.docs[:50]) == [d.full_text for d in ws.docs[:50]]
    assert all(examples.texts[examples.doc_text[i]] == ws.docs[i].full_text for i in range(50))
    # pseudo-queries from a file: the leading span still comes first, at its own length
    tsv = tmp_path / "pq.tsv"
    tsv.write_text("".join(f"{d.id}\tquery about {d.id}\n" for d in ws.docs[:5]))
    ws = Workspace(make_settings({"data": {"dataset": "scifact", "lead_words": 100000, "pseudo_queries": str(tsv)}}),
                   tmp_path / "file")
    examples = ws.examples()
    assert all(examples.texts[examples.doc_text[i]] == ws.docs[i].full_text for i in range(50))


def test_docasquery_and_pseudo_query_files(tmp_path):
    doc = Document("d1", " ".join(f"w{i}" for i in range(100)))
    pq = DocAsQuery(span_words=10, n_random=2, seed=3).generate([doc, Document("d2", "short text")])
    assert pq["d1"][0] == " ".join(f"w{i}" for i in range(10))
    assert len(pq["d1"]) == 3 and all(len(s.split()) == 10 for s in pq["d1"])
    assert pq == DocAsQuery(span_words=10, n_random=2, seed=3).generate([doc, Document("d2", "short text")])
    assert pq["d2"] == ["short text"]
    tsv = tmp_path / "q.tsv"
    tsv.write_text("d1\twhat is w1\nd1\tw2 meaning\n")
    assert load_pseudo_queries(tsv) == {"d1": ["what is w1", "w2 meaning"]}
    tsv.write_text("d1\twhat\nd7\tunknown doc\n")
    with pytest.raises(DataError, match=r"q.tsv:2: document id 'd7'"):
        load_pseudo_queries(tsv, {"d1": doc})
    jl = tmp_path / "q.jsonl"
    jl.write_text('{"doc_id": "d1", "queries": ["a", "b"]}\n{"doc_id": "d1"}\n')
    with pytest.raises(DataError, match=r"q.jsonl:2"):
        load_pseudo_queries(jl)


def test_doc2query_hook_with_a_local_model(tiny_t5):
    from genir.data import Doc2Query

    docs = [Document("d1", "the cell divides"), Document("d2", "proteins fold")]
    pq = Doc2Query(tiny_t5, n_queries=2, max_query_tokens=5, batch_size=2).generate(docs)
    assert set(pq) == {"d1", "d2"}
    # n_queries sampled texts per document, none empty (the tiny model's words are random, not blank)
    assert all(len(v) == 2 and all(q.strip() and len(q.split()) <= 5 for q in v) for v in pq.values()), pq
    assert Doc2Query(tiny_t5, n_queries=2, max_query_tokens=5, batch_size=2).generate(docs) == pq  # the seed fixes it


def test_esci_loader_maps_labels_to_grades(tmp_path):
    from genir.data import load_dataset
    from genir.data.collection import DataError
    from genir.data.esci import load_esci

    folder = tmp_path / "esci"
    folder.mkdir()
    (folder / "shopping_queries_dataset_examples.csv").write_text(
        "example_id,query,query_id,product_id,product_locale,esci_label,small_version,large_version,split\n"
        "0,usb c cable,1,P1,us,E,1,1,train\n"
        "1,usb c cable,1,P2,us,S,1,1,train\n"
        "2,usb c cable,1,P3,us,C,1,1,train\n"
        "3,usb c cable,1,P4,us,I,1,1,train\n"
        "4,red kettle,2,P2,us,E,1,1,test\n"
        "5,tetera roja,3,P9,es,E,1,1,test\n"
        "6,lamp,4,P5,us,E,0,1,test\n")
    (folder / "shopping_queries_dataset_products.csv").write_text(
        "product_id,product_title,product_description,product_bullet_point,product_brand,product_color,product_locale\n"
        'P1,USB-C cable,"A braided cable",Fast charging,Anker,black,us\n'
        "P2,Kettle,,Boils water,Acme,red,us\n"
        "P3,Charger,Wall charger,,,white,us\n"
        "P4,Lamp,Desk lamp,,,,us\n"
        "P5,Lamp 2,Floor lamp,,,,us\n"
        "P9,Tetera,Roja,,,,es\n")
    c = load_dataset(str(folder))
    assert c.qrels["train"]["1"] == {"P1": 3, "P2": 2, "P3": 1, "P4": 0}  # E/S/C/I -> 3/2/1/0
    assert c.qrels["test"] == {"2": {"P2": 3}}  # Spanish locale and large-only rows left out
    assert list(c.corpus) == ["P1", "P2", "P3", "P4"]
    assert c.corpus["P1"].title == "USB-C cable" and c.corpus["P1"].text == "A braided cable Fast charging Anker black"
    assert set(load_esci(folder, version=None).qrels["test"]) == {"2", "4"}
    bad = folder / "shopping_queries_dataset_examples.csv"
    bad.write_text(bad.read_text().replace("P3,us,C", "P3,us,X"))
    with pytest.raises(DataError, match=r"examples.csv:4: esci_label 'X'"):
        load_esci(folder)


def test_seen_unseen_with_new_documents_uses_the_training_judgements_that_remain(shared_datasets):
    """--new-docs takes documents out of training, and their training judgements with them: a test query
    is seen only through a relevant document that training still uses."""
    from genir.methods import make_settings
    from genir.workspace import Workspace

    ws = Workspace(make_settings({"data": {"dataset": "scifact", "new_docs": 0.1}}), "/tmp/unused")
    c = ws.collection
    old_seen, _ = seen_unseen(c.qrels["train"], c.qrels["test"])
    remaining = {q: {d: g for d, g in r.items() if d not in ws.new_doc_ids} for q, r in c.qrels["train"].items()}
    used = {d for r in remaining.values() for d, g in r.items() if g > 0}
    assert ws.subsets["seen"] == {q for q in ws.qrels if {d for d, g in ws.qrels[q].items() if g > 0} & used}
    moved = old_seen - ws.subsets["seen"]  # seen only through a held-out document: unseen now
    assert moved and moved <= ws.subsets["unseen"]


def test_query_free_signals_sentences_title_and_keywords():
    from genir.data.pseudo_queries import add_signals, keyword_queries, sentence_queries

    text = ("Vitamin D deficiency is common in elderly patients. Fractures of the hip follow falls. "
            "Short. We measured serum vitamin D levels in 300 patients. Supplementation lowered the fracture rate.")
    doc = Document("d1", text, title="Vitamin D and hip fractures")
    other = Document("d2", "Protein folding in yeast cells is studied with chaperones and yeast mutants.")
    sents = sentence_queries(doc, 10)
    assert sents[0] == "Vitamin D deficiency is common in elderly patients." and "Short." not in sents
    assert len(sents) == 4 and sentence_queries(doc, 2, seed=1) == sentence_queries(doc, 2, seed=1)
    assert len(sentence_queries(doc, 2)) == 2 and set(sentence_queries(doc, 2)) <= set(sents)
    kw = keyword_queries([doc, other], 2, terms=3)
    # "vitamin" and "fracture(s)" occur only in d1 and often: BM25's top terms; stopwords never appear
    assert kw["d1"][0].split()[0] == "vitamin" and len(kw["d1"]) == 2
    assert all(len(q.split()) == 3 for q in kw["d1"]) and "the" not in " ".join(kw["d1"]).split()
    assert kw["d2"][0].split()[0] == "yeast"  # the word d2 repeats, not one of its single words
    out = add_signals({"d1": ["lead span"], "d2": ["lead two"]}, [doc, other], sentences=1, title=True,
                      keywords=1, keyword_terms=3)
    assert out["d1"][0] == "lead span" and "Vitamin D and hip fractures" in out["d1"]
    assert len(out["d1"]) == 4 and out["d2"] == ["lead two", sentence_queries(other, 1)[0], kw["d2"][0]]
    assert add_signals({"d1": ["x"]}, [doc]) == {"d1": ["x"]}  # nothing asked, nothing added


def test_a_setting_added_since_keeps_older_folders_valid_at_its_default():
    from genir.methods import make_settings
    from genir.stages import method_fingerprint

    settings = make_settings()
    plain = method_fingerprint(settings, None, {})
    assert not any(k.startswith("data.keyword") or k == "data.title_query" for k in plain.train)
    settings.data.keyword_queries = 2
    assert method_fingerprint(settings, None, {}).train["data.keyword_queries"] == 2
    # Tied-Atomic's regulariser: absent at 0 (the folders made before it), part of the stage when set
    assert "tied.residual_weight" not in method_fingerprint(settings, "tied", {}).train
    settings.tied.residual_weight = 1.0
    assert method_fingerprint(settings, "tied", {}).train["tied.residual_weight"] == 1.0
    assert "tied.query_residual" not in method_fingerprint(settings, "tied", {}).train
    settings.tied.query_residual = False
    assert method_fingerprint(settings, "tied", {}).train["tied.query_residual"] is False


def test_a_whole_float_setting_matches_its_int_default_in_a_stage_record(tmp_path):
    """training.epochs unset resolves to its default 30 (an int) and reads 30.0 when given as --epochs 30:
    the same setting, so a folder made either way is reused, not retrained; 31 still differs."""
    from genir.methods import make_settings
    from genir.stages import Stage, method_fingerprint

    plain = make_settings()
    with_set = make_settings()
    with_set.set("training.epochs", "30")  # as --epochs does
    fp_plain, fp_set = method_fingerprint(plain, "tied", {}), method_fingerprint(with_set, "tied", {})
    assert repr(fp_plain.train["training.epochs"]) != repr(fp_set.train["training.epochs"])  # 30 vs 30.0
    assert fp_plain.hash == fp_set.hash

    def stage(fp, folder):
        return Stage("tied-atomic", folder / "stage.json", [folder], [], fp)

    stage(fp_plain, tmp_path).start()
    assert stage(fp_set, tmp_path).differences() == ([], [])
    other = make_settings()
    other.set("training.epochs", "31")
    train, _ = stage(method_fingerprint(other, "tied", {}), tmp_path).differences()
    assert train == ["training.epochs = 30 there, 31.0 now"]


@pytest.mark.own_texts
def test_each_method_trains_on_its_own_indexing_texts_unless_the_run_sets_them(tmp_path):
    """DSI-atomic's preset is every query-free text (its held-out winner), DSI-random's the light one: in one run
    each trains on its own, and its fingerprint records the values; data.indexing_texts or a count set by hand
    reaches every method; the rest of the workspace is shared."""
    from genir.methods import check_read, get_method, make_settings
    from genir.pipeline import Pipeline
    from genir.settings import SettingsError

    corpus = [{"_id": f"d{i}", "title": f"Title {i}", "text": " ".join(
        f"Sentence {s} of document {i} says w{i}x{s} and more words here." for s in range(12))} for i in range(6)]
    queries = [{"_id": f"q{i}", "text": f"document {i} words"} for i in range(6)]
    folder = write_beir(tmp_path / "c", corpus, queries, {"train": [(f"q{i}", f"d{i}", 1) for i in range(3)],
                                                          "test": [(f"q{i}", f"d{i}", 1) for i in range(3, 6)]})

    def pipeline(**data) -> Pipeline:
        p = Pipeline(make_settings({"data": {"dataset": str(folder), **data}, "methods": ["dsi-atomic", "dsi-random"],
                                    "baselines": [], "out": str(tmp_path / "run")}))
        p.prepare()
        return p

    p = pipeline()
    every, light = p.view(get_method("dsi-atomic")), p.view(get_method("dsi-random"))
    assert (every.settings.data.sentence_queries, light.settings.data.sentence_queries) == (3, 0)
    assert len(every.examples().texts) > len(light.examples().texts) > 6
    assert every.bm25() is light.bm25() and p.ws.for_texts("light") is p.ws  # shared, not rebuilt
    atomic, light_train = p.stages["dsi-atomic"].fingerprint.train, p.stages["dsi-random"].fingerprint.train
    assert atomic["data.keyword_queries"] == 2 and atomic["data.random_spans"] == 3
    # the light preset is how folders were made before presets: the same keys, so they stay valid
    assert "data.keyword_queries" not in light_train and light_train["data.random_spans"] == 1
    assert "data.indexing_texts" not in light_train
    notes = [n for n in p.ws.data_notes({"dsi-atomic": every, "dsi-random": light}) if n.startswith("Indexing texts")]
    assert len(notes) == 2 and "3 sentence(s), the title, 2 keyword" in notes[0] and "0 sentence(s)" in notes[1]

    p = pipeline(indexing_texts="light")
    assert p.view(get_method("dsi-atomic")).settings.data == p.view(get_method("dsi-random")).settings.data
    atomic, light_train = ({k: v for k, v in p.stages[m].fingerprint.train.items() if k.startswith("data.")}
                      for m in ("dsi-atomic", "dsi-random"))
    assert atomic == light_train and atomic["data.random_spans"] == 1
    p = pipeline(sentence_queries=1)
    atomic, light = (p.view(get_method(m)).settings.data for m in ("dsi-atomic", "dsi-random"))
    assert (atomic.sentence_queries, atomic.keyword_queries) == (1, 2)
    assert (light.sentence_queries, light.keyword_queries) == (1, 0)
    with pytest.raises(SettingsError, match="indexing_texts=all"):  # set with no method to read it: refused
        check_read(make_settings({"data": {"indexing_texts": "all"}, "methods": [], "baselines": ["bm25"]}))


@pytest.mark.own_texts  # each method's own preset: dsi-atomic's holds keyword queries
def test_indexing_text_settings_their_texts_do_not_read_are_refused():
    from genir.methods import check_read, make_settings
    from genir.settings import SettingsError

    for data, message in (({"pseudo_queries": "pq.tsv", "random_spans": 2}, "data.random_spans shapes DocAsQuery"),
                          ({"doc2query_n": 3}, "with 'docasquery' no query is generated"),
                          ({"keyword_terms": 4}, "no method of this run trains on any")):
        with pytest.raises(SettingsError, match=message):
            check_read(make_settings({"data": data, "methods": ["dsi-random", "tied-atomic"], "baselines": []}))
    for data, methods in (({"doc2query_n": 3, "pseudo_queries": "doc2query:t5-small"}, ["dsi-random"]),
                          ({"keyword_terms": 4}, ["dsi-random", "dsi-atomic"]),  # dsi-atomic's preset has 2
                          ({"keyword_terms": 4, "keyword_queries": 1}, ["dsi-random"])):
        check_read(make_settings({"data": data, "methods": methods, "baselines": []}))
