"""Shared fixtures: tiny backbones built from configs (random weights, saved as plain folders), real data paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
os.environ.setdefault("GENIR_DATASETS", str(SHARED))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _save_tiny(kind: str, folder: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel, T5Config, T5ForConditionalGeneration

    from genir.models import bundled_minilm_path

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(bundled_minilm_path())
    if kind == "bert":
        cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128)
        model = BertModel(cfg)
    else:
        cfg = T5Config(vocab_size=tok.vocab_size, d_model=32, d_ff=64, d_kv=16, num_layers=1,
                       num_decoder_layers=1, num_heads=2, decoder_start_token_id=0, pad_token_id=0)
        model = T5ForConditionalGeneration(cfg)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


_OWN_TEXTS: dict[type, str] = {}  # each method class's own preset, restored for tests marked own_texts


@pytest.fixture(scope="session", autouse=True)
def light_indexing_texts():
    """Tests train tiny models on slices of a few dozen documents, where the "all" preset (about five times the
    texts: DSI-atomic's, DSI-semantic's, GenRet's and MERGE's own) would only multiply their time: every method
    trains on the light preset, for the whole session (module fixtures that train included), unless a test is
    marked ``own_texts``. Processes a test starts (spawned ranks, a CLI subprocess) are given
    ``data.indexing_texts=light`` by the test itself."""
    from genir.methods import METHODS

    with pytest.MonkeyPatch.context() as patch:
        for method in METHODS.values():
            _OWN_TEXTS[type(method)] = type(method).indexing_texts
            patch.setattr(type(method), "indexing_texts", "light")
        yield


@pytest.fixture(autouse=True)
def own_indexing_texts(request, light_indexing_texts):
    """A test marked ``own_texts``: each method with its own preset again."""
    if not request.node.get_closest_marker("own_texts"):
        yield
        return
    with pytest.MonkeyPatch.context() as patch:
        for cls, preset in _OWN_TEXTS.items():
            patch.setattr(cls, "indexing_texts", preset)
        yield


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> str:
    return str(_save_tiny("bert", tmp_path_factory.mktemp("tiny-bert")))


@pytest.fixture(scope="session")
def tiny_t5(tmp_path_factory) -> str:
    return str(_save_tiny("t5", tmp_path_factory.mktemp("tiny-t5")))


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    if not (SHARED / "scifact" / "corpus.jsonl").exists():
        pytest.skip("../shared/datasets is not beside the checkout")
    return SHARED


LIVE_METHODS = ["dsi-semantic", "tied-atomic", "genret", "glen", "merge"]  # take documents without retraining
REFUSING = ["dsi-atomic"]


@pytest.fixture(scope="session")
def live_run(tmp_path_factory, shared_datasets, tiny_bert):
    """A tiny trained run (a SciFact slice, 60 documents; every live-capable method and one that refuses)."""
    from genir.methods import make_settings
    from genir.pipeline import run
    from tests.test_pipeline import _slice

    data = _slice(tmp_path_factory, shared_datasets, "scifact", {"train": 20, "test": 8}, 60)
    out = tmp_path_factory.mktemp("live") / "run"
    cfg = make_settings({"data": {"dataset": str(data)}, "model": {"backbone": tiny_bert},
                         "baselines": ["bm25", "dense"], "methods": LIVE_METHODS + REFUSING, "out": str(out),
                         "search": {"beam": 10}, "training": {"epochs": 2, "batch_size": 16},
                         "dsi": {"semantic_c": 6}, "genret": {"codes": 8, "epochs": 3, "warmup_epochs": 1,
                                                              "fit_epochs": 1},
                         "glen": {"keyword_epochs": 1, "refine_epochs": 1, "batch_size": 8, "negatives": 3},
                         "merge": {"codes": 8, "epochs": 5, "batch_size": 64}})
    report = run(cfg)
    assert not report["failed"], report["failed"]
    return out
