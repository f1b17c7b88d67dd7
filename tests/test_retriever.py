"""A trained folder opens itself: copied anywhere, it searches as its run did (Python API and CLI)."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from genir.cli import app
from genir.evaluation import read_run
from genir.methods import make_settings
from genir.pipeline import run
from genir.retriever import RECORD, Retriever
from tests.test_pipeline import _slice


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_datasets, tiny_bert):
    data = _slice(tmp_path_factory, shared_datasets, "scifact", {"train": 30, "test": 10}, 80)
    out = tmp_path_factory.mktemp("runs") / "scifact"
    # beam 5 and k 20, not the defaults: a loader that did not use the folder's own settings ranks otherwise
    run(make_settings({"data": {"dataset": str(data)}, "model": {"backbone": tiny_bert, "decoder_ff": 64},
                       "methods": ["dsi-atomic", "tied-atomic"], "baselines": ["bm25", "dense"], "out": str(out),
                       "training": {"epochs": 2, "batch_size": 16}, "search": {"beam": 5, "k": 20}}))
    return out, data


def _test_queries(data) -> dict[str, str]:
    from genir.data import load_dataset

    return load_dataset(str(data)).split_queries("test")


def _same_ranking(retriever: Retriever, run_file, queries: dict[str, str], k: int = 20) -> None:
    expected = read_run(run_file)
    if retriever.method is not None and retriever.method.name == "dsi-atomic":  # the run's beam of 5 bounds it
        assert max(len(h) for h in expected.values()) == 5
    got = retriever.batch_search(queries, k)
    assert set(got) == set(expected)
    for q in expected:
        assert [h.doc_id for h in got[q]] == [h.doc_id for h in expected[q]], q
        assert [round(h.score, 4) for h in got[q]] == pytest.approx([round(h.score, 4) for h in expected[q]],
                                                                     abs=1e-3)


@pytest.mark.parametrize("name", ["dsi-atomic", "tied-atomic", "bm25", "dense"])
def test_a_copied_folder_searches_as_its_run_did(trained, tmp_path, name):
    out, data = trained
    source = out / name if name.endswith("atomic") else out / "baselines" / name
    run_file = source / f"{name}.trec" if name.endswith("atomic") else out / "baselines" / f"{name}.trec"
    copy = tmp_path / "elsewhere"
    shutil.copytree(source, copy)  # no run around it: no config.json beside it
    record = json.loads((copy / RECORD).read_text())
    assert record["name"] == name and record["settings"]["search"]["beam"] == 5
    retriever = Retriever.load(copy)
    assert retriever.name == name
    queries = _test_queries(data)
    _same_ranking(retriever, run_file, queries)
    # the CLI, on the copy
    q = next(iter(queries))
    res = CliRunner().invoke(app, ["search", str(copy), queries[q], "--k", "20"])
    assert res.exit_code == 0, res.output
    hits = json.loads(res.output[res.output.index("{\"query\""):].splitlines()[0])["hits"]
    assert [h[0] for h in hits] == [h.doc_id for h in read_run(run_file)[q]]


def test_the_folder_record_says_what_it_is_not_its_name(trained, tmp_path):
    out, data = trained
    renamed = tmp_path / "dsi-naive"
    shutil.copytree(out / "dsi-atomic", renamed)
    retriever = Retriever.load(renamed)
    assert retriever.name == "dsi-atomic" and retriever.method.name == "dsi-atomic"
    _same_ranking(retriever, out / "dsi-atomic" / "dsi-atomic.trec", _test_queries(data))
    saved = retriever.save(tmp_path / "saved")  # save(dir) gives a folder that opens the same way
    _same_ranking(Retriever.load(saved), out / "dsi-atomic" / "dsi-atomic.trec", _test_queries(data))


def test_folders_without_a_record(trained, tmp_path):
    out, data = trained
    # a run folder from before records: opened through its run's config.json, as before
    old_run = tmp_path / "old"
    shutil.copytree(out, old_run)
    (old_run / "dsi-atomic" / RECORD).unlink()
    _same_ranking(Retriever.load(old_run / "dsi-atomic"), out / "dsi-atomic" / "dsi-atomic.trec", _test_queries(data))
    # such a folder alone, or a baseline folder from before genir saved baseline indexes: refused, saying how
    alone = tmp_path / "alone"
    shutil.copytree(old_run / "dsi-atomic", alone)
    with pytest.raises(ValueError, match="no retriever.json"):
        Retriever.load(alone)
    shutil.rmtree(old_run / "baselines" / "bm25")  # as runs made before baseline indexes were saved
    res = CliRunner().invoke(app, ["search", str(old_run / "baselines" / "bm25"), "vitamin"])
    assert res.exit_code == 2 and "--redo bm25" in res.output
    (old_run / "baselines" / "dense" / RECORD).unlink()
    res = CliRunner().invoke(app, ["search", str(old_run / "baselines" / "dense"), "vitamin"])
    assert res.exit_code == 2 and "--redo" in res.output


def test_a_record_from_another_recipe_revision_is_refused(trained, tmp_path):
    out, _ = trained
    copy = tmp_path / "copy"
    shutil.copytree(out / "dsi-atomic", copy)
    record = json.loads((copy / RECORD).read_text())
    (copy / RECORD).write_text(json.dumps({**record, "revision": 99}))
    with pytest.raises(ValueError, match="--redo dsi-atomic"):
        Retriever.load(copy)


@pytest.mark.parametrize("name", ["dsi-atomic", "tied-atomic", "dense"])
def test_int8_search_quantises_the_encoders_that_search_and_leaves_the_folder_as_it_was(trained, name):
    from torch.ao.nn.quantized.dynamic import Linear as Int8Linear
    from torch.nn import Linear

    out, data = trained
    folder = out / name if name.endswith("atomic") else out / "baselines" / name
    before = {p.name: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    fp32 = Retriever.load(folder)
    int8 = Retriever.load(folder, overrides={"search.encoder_precision": "int8"})
    encoder = {"fp32": fp32.searcher.query_encoder if name == "dense" else fp32.searcher.model.encoder,
               "int8": int8.searcher.query_encoder if name == "dense" else int8.searcher.model.encoder}
    kinds = {k: {type(m) for m in e.modules() if isinstance(m, (Linear, Int8Linear))} for k, e in encoder.items()}
    assert kinds == {"fp32": {Linear}, "int8": {Int8Linear}}
    if name == "dense":  # the documents' embeddings and the saved encoder stay fp32
        assert int8.searcher.encoder is not int8.searcher.query_encoder
    queries = _test_queries(data)
    a, b = fp32.batch_search(queries, 20), int8.batch_search(queries, 20)
    assert any([h.score for h in a[q]] != [h.score for h in b[q]] for q in a)  # int8 did run
    assert {p.name: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("name", ["dsi-atomic", "tied-atomic", "dense"])
def test_bf16_search_runs_the_encoders_matrix_products_in_bf16_and_hands_on_fp32(trained, name):
    import torch
    from torch.nn import Linear

    out, data = trained
    folder = out / name if name.endswith("atomic") else out / "baselines" / name
    before = {p.name: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    queries = _test_queries(data)
    seen: dict[str, set] = {}
    hits = {}
    for precision in ("fp32", "bf16"):
        searcher = Retriever.load(folder, overrides={"search.encoder_precision": precision}).searcher
        encoder = searcher.query_encoder if name == "dense" else searcher.model.encoder
        linear = next(m for m in encoder.modules() if isinstance(m, Linear))
        seen[precision] = set()

        def record(module, inputs, output, part: str, dtypes: set = seen[precision]):
            value = output if torch.is_tensor(output) else getattr(output, "last_hidden_state", None)
            if value is None:
                value = output[0] if isinstance(output, tuple) else output["sentence_embedding"]
            dtypes.add((part, value.dtype))

        hooks = [linear.register_forward_hook(lambda m, i, o: record(m, i, o, "linear")),
                 encoder.register_forward_hook(lambda m, i, o: record(m, i, o, "out"))]
        if name == "dense":
            encoded = searcher.encode_queries(list(queries.values()))
            assert encoded.dtype == "float32"
        hits[precision] = searcher.batch_search(queries, 20)
        for h in hooks:
            h.remove()
    # the matrix products in bf16, what leaves the encoder (the states, the pooled embedding) in fp32
    assert seen == {"fp32": {("linear", torch.float32), ("out", torch.float32)},
                    "bf16": {("linear", torch.bfloat16), ("out", torch.float32)}}
    a, b = hits["fp32"], hits["bf16"]
    assert any([h.score for h in a[q]] != [h.score for h in b[q]] for q in a)  # bf16 did run
    assert all(a[q][0].doc_id in {h.doc_id for h in b[q][:5]} for q in a)  # and ranks about as fp32 does
    assert {p.name: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()} == before


def test_bf16_decoder_runs_the_decoder_steps_in_bf16_and_leaves_the_encoder_in_fp32(trained):
    import torch

    from genir.settings import SettingsError

    out, data = trained
    queries = _test_queries(data)
    seen: dict[str, set] = {}

    def record(dtypes: set, part: str):
        def hook(module, inputs, output):
            out = output[0] if isinstance(output, tuple) else getattr(output, "last_hidden_state", output)
            dtypes.add((part, out.dtype))
        return hook

    for precision in ("fp32", "bf16"):
        searcher = Retriever.load(out / "dsi-atomic", overrides={"search.decoder_precision": precision}).searcher
        seen[precision] = set()
        hooks = [searcher.model.decoder.layers[0].qkv.register_forward_hook(record(seen[precision], "dec")),
                 searcher.model.encoder.register_forward_hook(record(seen[precision], "enc"))]
        hits = searcher.batch_search(queries, 20)
        for h in hooks:
            h.remove()
        assert all(hits.values())
    assert seen == {"fp32": {("dec", torch.float32), ("enc", torch.float32)},
                    "bf16": {("dec", torch.bfloat16), ("enc", torch.float32)}}
    with pytest.raises(SettingsError, match="tied-atomic searches by"):  # no beam-search decoder: refused
        Retriever.load(out / "tied-atomic", overrides={"search.decoder_precision": "bf16"})


def test_a_prefix_beam_reaches_the_searcher_a_folder_opens_and_is_held_to_its_beam(trained):
    from genir.settings import SettingsError

    out, _ = trained
    assert Retriever.load(out / "dsi-atomic").searcher.prefix_beam is None
    assert Retriever.load(out / "dsi-atomic", overrides={"search.prefix_beam": 3}).searcher.prefix_beam == 3
    with pytest.raises(SettingsError, match="above the beam"):
        Retriever.load(out / "dsi-atomic", beam=2, overrides={"search.prefix_beam": 3})


def test_a_beam_for_a_folder_without_a_beam_search_is_refused(trained):
    # Retriever.load's beam= (genir search --beam, genir serve --beam): read by a beam search, refused elsewhere
    from genir.live import LiveIndex, LiveIndexError
    from genir.settings import SettingsError

    out, _ = trained
    for folder in (out / "tied-atomic", out / "baselines" / "bm25", out / "baselines" / "dense"):
        with pytest.raises(SettingsError, match=rf"beam 5: {folder.name} ranks every document without a beam"):
            Retriever.load(folder, beam=5)
    res = CliRunner().invoke(app, ["search", str(out / "baselines" / "bm25"), "bone", "--beam", "5"])
    assert res.exit_code == 2 and "ranks every document without a beam search" in res.output, res.output
    assert Retriever.load(out / "dsi-atomic", beam=5).searcher.beam == 5
    with pytest.raises(LiveIndexError, match="--beam 5: none of the systems served here"):
        LiveIndex(out, ["tied-atomic"], beam=5)
    served = LiveIndex(out, ["tied-atomic", "dsi-atomic"], baselines=(), beam=5)  # the beam reaches dsi-atomic
    assert served.searcher("dsi-atomic").inner.beam == 5 and served.searcher("tied-atomic") is not None


def test_int8_is_a_search_setting_of_the_stage(trained, tmp_path):
    out, data = trained
    backbone = json.loads((out / "config.json").read_text())["model"]["backbone"]
    args = ["run", "--dataset", str(data), "--method", "dsi-atomic", "--method", "tied-atomic", "--baseline", "bm25",
            "--baseline", "dense", "--backbone", backbone, "--set", "model.decoder_ff=64", "--epochs", "2",
            "--batch-size", "16", "--beam", "5", "--set", "search.k=20", "--out", str(out)]
    res = CliRunner().invoke(app, [*args, "--encoder-precision", "int8"])
    assert res.exit_code == 2 and "search.encoder_precision" in res.output, res.output  # a stale stage, named


@pytest.mark.parametrize(("name", "key", "value"), [("dsi-atomic", "training.epochs", "3"),
                                                     ("dsi-atomic", "glen.tie_break", "random"),
                                                     ("dsi-atomic", "search.k", "5"),
                                                     ("tied-atomic", "search.beam", "5"),
                                                     ("tied-atomic", "search.prefix_beam", "5"),
                                                     ("dense", "search.decoder_precision", "bf16"),
                                                     ("bm25", "search.encoder_precision", "bf16")])
def test_a_setting_the_folders_searcher_does_not_read_is_refused(trained, name, key, value):
    from genir.settings import SettingsError

    out, _ = trained
    folder = out / name if name.endswith("atomic") else out / "baselines" / name
    with pytest.raises(SettingsError, match=f"{key}: {name}'s searcher does not read it"):
        Retriever.load(folder, overrides={key: value})
    res = CliRunner().invoke(app, ["search", str(folder), "vitamin", "--set", f"{key}={value}"])
    assert res.exit_code == 2 and "does not read it" in res.output, res.output


def test_serve_settings_reach_every_searcher_that_reads_them_and_no_other(trained):
    from genir.live import LiveIndex, LiveIndexError

    out, _ = trained
    index = LiveIndex(out, ["dsi-atomic", "tied-atomic"], ["bm25", "dense"],
                      overrides={"search.encoder_precision": "bf16", "search.decoder_precision": "bf16",
                                 "search.prefix_beam": "2"})
    dsi, tied, dense = (index.searcher(n).inner for n in ("dsi-atomic", "tied-atomic", "dense"))
    assert dsi.model.encoder.precision == tied.model.encoder.precision == dense.query_precision == "bf16"
    assert dsi.decoder_dtype is not None  # the decoder that beam-searches; Tied-Atomic has none to take it
    assert dsi.prefix_beam == 2 and not hasattr(tied, "prefix_beam")
    assert index.searcher("bm25").batch_search({"q": "vitamin"}, 3)["q"]
    with pytest.raises(LiveIndexError, match="training.epochs: read by none"):
        LiveIndex(out, ["dsi-atomic"], ["bm25"], overrides={"training.epochs": "3"})
    with pytest.raises(LiveIndexError, match="search.encoder_precision: read by none"):
        LiveIndex(out, [], ["bm25"], overrides={"search.encoder_precision": "bf16"})
    res = CliRunner().invoke(app, ["serve", str(out), "--method", "dsi-atomic", "--set", "data.span_words=3"])
    assert res.exit_code == 2 and "data.span_words: read by none" in res.output, res.output


def test_a_corpus_given_to_a_folder_that_does_not_encode_one_is_refused(trained):
    out, data = trained
    with pytest.raises(ValueError, match="searches the documents it indexed"):
        Retriever.load(out / "baselines" / "dense", docs=[])
    for folder in (out / "baselines" / "dense", out / "dsi-atomic"):  # dense used to search its own corpus anyway
        res = CliRunner().invoke(app, ["search", str(folder), "vitamin", "--dataset", str(data)])
        assert res.exit_code == 2 and "searches the d" in res.output, res.output
    res = CliRunner().invoke(app, ["search", str(out / "tied-atomic"), "vitamin", "--dataset", str(data)])
    assert res.exit_code == 0 and res.output.strip(), res.output  # Tied-Atomic encodes the corpus it is given
