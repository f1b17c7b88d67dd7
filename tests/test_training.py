"""The training loop: loss goes down, a killed run resumes to the same weights, distributed-ready."""

from __future__ import annotations

import pytest
import torch

from genir.docids import PrefixTree, atomic_docids, semantic_docids
from genir.models import DocidSeq2Seq, ModelConfig
from genir.training import EncodedTexts, IndexingExamples, TrainConfig, Trainer, seq2seq_loss
from genir.training.data import DocidCollator, DocidDataset


def _setup(tiny_bert, n_docs=12):
    texts = [f"document number {i} about topic {i % 3}" for i in range(n_docs)]
    examples = IndexingExamples(texts, [(i, i, "indexing") for i in range(n_docs)])
    table = atomic_docids([f"d{i}" for i in range(n_docs)])
    trie = PrefixTree(table)
    targets = [trie.full_sequence(i) for i in range(n_docs)]
    torch.manual_seed(0)
    model = DocidSeq2Seq(ModelConfig(n_codes=table.vocab_size, backbone=tiny_bert, decoder_heads=2,
                                     decoder_ff=64, dropout=0.0))
    model.freeze_encoder(True)
    encoded = EncodedTexts(model, texts, max_length=16, show_progress=False)
    return model, examples, targets, encoded


def test_frozen_training_learns_and_leaves_encoder_alone(tiny_bert):
    model, examples, targets, encoded = _setup(tiny_bert)
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    collate = DocidCollator(examples, targets, model, encoded)
    trainer = Trainer(model, seq2seq_loss, DocidDataset(examples, targets), collate,
                      TrainConfig(epochs=60, batch_size=4, lr=3e-3, checkpoint_every=0), show_progress=False)
    info = trainer.train()
    first = sum(x for _, x in trainer.history[:3]) / 3
    last = sum(x for _, x in trainer.history[-3:]) / 3
    assert last < first * 0.3
    assert info["steps"] == 60 * 3
    for k, v in model.encoder.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_killed_run_resumes_to_identical_weights(tiny_bert, tmp_path):
    cfg = TrainConfig(epochs=3, batch_size=4, lr=1e-3, checkpoint_every=2)

    model, examples, targets, encoded = _setup(tiny_bert)
    Trainer(model, seq2seq_loss, DocidDataset(examples, targets), DocidCollator(examples, targets, model, encoded),
            cfg, tmp_path / "straight", show_progress=False).train()
    straight = {k: v.clone() for k, v in model.state_dict().items()}

    calls = {"n": 0}

    def dies_after_five(m, batch):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt("killed")
        return seq2seq_loss(m, batch)

    model, examples, targets, encoded = _setup(tiny_bert)
    ds, collate = DocidDataset(examples, targets), DocidCollator(examples, targets, model, encoded)
    with pytest.raises(KeyboardInterrupt):
        Trainer(model, dies_after_five, ds, collate, cfg, tmp_path / "killed", show_progress=False).train()
    assert (tmp_path / "killed" / "last.pt").exists()
    assert not (tmp_path / "killed" / "last.pt.tmp").exists()

    model, examples, targets, encoded = _setup(tiny_bert)  # a fresh process: new model, same folder
    trainer = Trainer(model, seq2seq_loss, ds, DocidCollator(examples, targets, model, encoded), cfg,
                      tmp_path / "killed", show_progress=False)
    assert trainer.train()["steps"] == 9
    assert [s for s, _ in trainer.history] == list(range(1, 10))
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, straight[k], msg=k)


def test_full_finetuning_updates_encoder(tiny_bert):
    model, examples, targets, _ = _setup(tiny_bert)
    model.freeze_encoder(False)
    before = next(model.encoder.parameters()).clone()
    collate = DocidCollator(examples, targets, model, None, max_length=16)
    Trainer(model, seq2seq_loss, DocidDataset(examples, targets), collate,
            TrainConfig(epochs=1, batch_size=4, encoder_lr=1e-2, checkpoint_every=0), show_progress=False).train()
    assert not torch.equal(before, next(model.encoder.parameters()))


def test_model_save_load_round_trip(tiny_bert, tiny_t5, tmp_path):
    import numpy as np

    from genir.search.generative import GenerativeSearcher

    rng = np.random.default_rng(0)
    table = semantic_docids([f"d{i}" for i in range(30)], rng.normal(size=(30, 4)).astype("float32"), c=4)
    for backbone in (tiny_bert, tiny_t5):
        model = DocidSeq2Seq(ModelConfig(n_codes=4, backbone=backbone, decoder_heads=2, decoder_ff=64)).eval()
        model.save(tmp_path / "m")
        again = DocidSeq2Seq.load(tmp_path / "m")
        a = GenerativeSearcher(model, table, beam=8).search("some query", 10)
        b = GenerativeSearcher(again, table, beam=8).search("some query", 10)
        assert [h.doc_id for h in a] == [h.doc_id for h in b]
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], rtol=1e-5)
