"""The training loop: loss goes down, a killed run resumes to the same weights, distributed-ready."""

from __future__ import annotations

import json
import random

import pytest
import torch

from genir.docids import PrefixTree, atomic_docids, semantic_docids
from genir.models import DocidSeq2Seq, ModelConfig
from genir.settings import TrainingSettings
from genir.training import EncodedTexts, IndexingExamples, Trainer, seq2seq_loss
from genir.training.data import DocidCollator, DocidDataset, TextInputs


def _setup(tiny_bert, n_docs=12, dropout=0.0):
    texts = [f"document number {i} about topic {i % 3}" for i in range(n_docs)]
    examples = IndexingExamples(texts, [(i, i, "indexing") for i in range(n_docs)])
    table = atomic_docids([f"d{i}" for i in range(n_docs)])
    trie = PrefixTree(table)
    targets = [trie.full_sequence(i) for i in range(n_docs)]
    torch.manual_seed(0)
    model = DocidSeq2Seq(ModelConfig(n_codes=table.vocab_size, backbone=tiny_bert, decoder_heads=2,
                                     decoder_ff=64, dropout=dropout))
    model.freeze_encoder(True)
    encoded = EncodedTexts(model, texts, max_length=16, show_progress=False)
    return model, examples, targets, encoded


def test_encoded_texts_keep_each_texts_tokens_only(tiny_bert, tmp_path):
    """The frozen-encoder store holds each text's real tokens (not max_length of them), gives back exactly
    the states the encoder computes for them, in any order and joined to another store, through save/load
    and from the padded layout of older run folders."""
    from safetensors.torch import save_file

    texts = ["a", "a much longer text about several topics at once, longer than the rest", "mid length text",
             "b c", "another text of some words"]
    model = DocidSeq2Seq(ModelConfig(n_codes=4, backbone=tiny_bert, decoder_heads=2, decoder_ff=64)).eval()
    store = EncodedTexts(model, texts, max_length=12, batch_size=2, show_progress=False)
    with torch.no_grad():
        expected = [model.encode_texts([t], 12) for t in texts]  # each alone: no padding at all
    real = [int(m.sum()) for _, m in expected]
    assert store.flat.shape[0] == sum(real) < len(texts) * 12
    order = [3, 1, 4, 0]
    states, mask = store.batch(order)
    assert mask.sum(1).tolist() == [real[i] for i in order] and states.shape[1] == max(real[i] for i in order)
    for row, i in enumerate(order):
        assert torch.allclose(states[row, : real[i]], expected[i][0][0, : real[i]], atol=1e-2)
        assert not states[row, real[i]:].any()  # zeros past the text's end
    second = EncodedTexts(model, texts[:2], max_length=12, show_progress=False)
    joined = EncodedTexts.joined(store, second)
    for a, b in ((len(texts), 0), (len(texts) + 1, 1)):
        assert torch.equal(joined.batch([a])[0], store.batch([b])[0])
    store.save(tmp_path / "store.safetensors")
    again = EncodedTexts.load(tmp_path / "store.safetensors")
    assert torch.equal(again.batch(order)[0], states) and torch.equal(again.batch(order)[1], mask)
    # a store written padded (states [n, max_length, d] and masks) loads as the same texts
    padded, pmask = store.batch(list(range(len(texts))))
    save_file({"states": padded.half(), "mask": pmask}, str(tmp_path / "old.safetensors"),
              metadata={"max_length": "12"})
    old = EncodedTexts.load(tmp_path / "old.safetensors")
    assert torch.equal(old.batch(order)[0], states) and torch.equal(old.batch(order)[1], mask)


def test_frozen_training_learns_and_leaves_encoder_alone(tiny_bert):
    model, examples, targets, encoded = _setup(tiny_bert)
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    collate = DocidCollator(targets, TextInputs(examples.texts, 16, model, encoded))
    trainer = Trainer(model, seq2seq_loss, DocidDataset(examples, targets), collate,
                      TrainingSettings(epochs=60, batch_size=4, lr=3e-3, checkpoint_every=0), show_progress=False)
    info = trainer.train()
    first = sum(x for _, x in trainer.history[:3]) / 3
    last = sum(x for _, x in trainer.history[-3:]) / 3
    assert last < first * 0.3
    assert info["steps"] == 60 * 3
    for k, v in model.encoder.state_dict().items():
        assert torch.equal(v, before[k]), k


class NoisyCollate:
    """A collator that draws from its own generator (as negative samplers do): drops an item at random."""

    def __init__(self, inner):
        self.inner, self.rng = inner, random.Random(123)

    def __call__(self, items):
        if len(items) > 1 and self.rng.random() < 0.5:
            items = items[: -1]
        return self.inner(items)


class CountingObjective:
    """An objective with state of its own (as GenRet's bank and GLEN's epoch counter): the loss weight
    cycles with the number of calls, so a resumed run that restarts the count trains differently."""

    def __init__(self, die_at: int | None = None):
        self.calls, self.die_at = 0, die_at

    def __call__(self, model, batch):
        self.calls += 1
        if self.calls == self.die_at:
            raise KeyboardInterrupt("killed")
        loss, logs = seq2seq_loss(model, batch)
        return loss * (1 + self.calls % 3), logs

    def checkpoint_state(self):
        return {"calls": torch.tensor(self.calls)}

    def load_checkpoint_state(self, state):
        self.calls = int(state["calls"])


def _trainer(tiny_bert, folder, cfg, objective=None):
    objective = objective or CountingObjective()
    model, examples, targets, encoded = _setup(tiny_bert, dropout=0.1)
    collate = NoisyCollate(DocidCollator(targets, TextInputs(examples.texts, 16, model, encoded)))
    return model, Trainer(model, objective, DocidDataset(examples, targets), collate, cfg, folder,
                          show_progress=False)


def test_discard_removes_checkpoints_and_leftovers_and_nothing_else(tmp_path):
    """Once a stage's model is saved its checkpoints are dead weight (weights plus two optimiser moments):
    every checkpoint under the folder goes, with an interrupted write's leftover, and the folders left empty;
    the model and any other file stay."""
    from genir.training import checkpoint

    root = tmp_path / "method"
    for folder in (root / "checkpoints", root / "phase1" / "checkpoints", root / "progressive" / "step1"):
        for step in (1, 2):
            checkpoint.save(folder, step, {"w": torch.ones(10)}, {"step": step})
    (root / "checkpoints" / "step-00000003.tmp").mkdir()  # a write killed half-way
    (root / "model").mkdir()
    (root / "model" / "weights.safetensors").write_bytes(b"x")
    (root / "progressive" / "codes.npy").write_bytes(b"x")
    (root / "notes-step-1").mkdir()  # not a checkpoint's name
    freed = checkpoint.discard(root)
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    assert left == ["model", "model/weights.safetensors", "notes-step-1", "progressive", "progressive/codes.npy"]
    assert freed >= 6 * 40 and checkpoint.discard(root) == 0


def test_killed_run_resumes_to_identical_weights(tiny_bert, tmp_path):
    """Dropout, a collator with its own generator and an objective with a state of its own: the resumed run
    follows the uninterrupted one only if the checkpoint restores every random generator, the position in
    the epoch and the objective's state."""
    cfg = TrainingSettings(epochs=3, batch_size=4, lr=1e-3, checkpoint_every=2)
    model, trainer = _trainer(tiny_bert, tmp_path / "straight", cfg)
    trainer.train()
    straight = {k: v.clone() for k, v in model.state_dict().items()}

    _, trainer = _trainer(tiny_bert, tmp_path / "killed", cfg, CountingObjective(die_at=6))
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    kept = sorted(p.name for p in (tmp_path / "killed").iterdir())
    assert kept == ["step-00000003", "step-00000004"]  # the newest two (step 3 ends epoch 1), no temporary one
    assert sorted(p.name for p in (tmp_path / "killed" / "step-00000004").iterdir()) == ["meta.json",
                                                                                          "state.safetensors"]
    # the killed process's training time, as its checkpoint keeps it (made long, to tell it from the resumed
    # process's own seconds): the resumed run reports the time of its steps in both processes
    meta_path = tmp_path / "killed" / "step-00000004" / "meta.json"
    meta = json.loads(meta_path.read_text())
    assert 0 < meta["seconds"] < 600
    meta_path.write_text(json.dumps({**meta, "seconds": 1000.0}))
    model, trainer = _trainer(tiny_bert, tmp_path / "killed", cfg)  # a fresh process: new model, same folder
    random.random(), torch.rand(3)  # the new process's generators are elsewhere
    resumed = trainer.train()
    assert resumed["steps"] == 9 and resumed["resumed_at_step"] == 4
    assert 1000 < resumed["seconds"] < 1600
    assert [s for s, _ in trainer.history] == list(range(1, 10))
    for k, v in model.state_dict().items():
        assert torch.equal(v, straight[k]), k


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(tiny_bert, tmp_path):
    cfg = TrainingSettings(epochs=3, batch_size=4, lr=1e-3, checkpoint_every=2)
    _, trainer = _trainer(tiny_bert, tmp_path / "run", cfg)
    trainer.train()
    newest = sorted((tmp_path / "run").iterdir())[-1]
    (newest / "state.safetensors").write_bytes(b"\x00" * 10)
    _, trainer = _trainer(tiny_bert, tmp_path / "run", cfg)
    assert trainer.train()["steps"] == 9  # resumed from the previous checkpoint, trained to the end


def test_full_finetuning_updates_encoder(tiny_bert):
    model, examples, targets, _ = _setup(tiny_bert)
    model.freeze_encoder(False)
    before = next(model.encoder.parameters()).clone()
    collate = DocidCollator(targets, TextInputs(examples.texts, 16, model))
    Trainer(model, seq2seq_loss, DocidDataset(examples, targets), collate,
            TrainingSettings(epochs=1, batch_size=4, encoder_lr=1e-2, checkpoint_every=0), show_progress=False).train()
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
