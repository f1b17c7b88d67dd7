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
