"""`--encoder full` for every method, through `genir run` on a SciFact slice with a tiny backbone: the
encoder's weights move and the training loss falls; with `frozen` the encoder is bit-for-bit the
pretrained one. And the training settings around it: gradient accumulation, bf16, per-group warm-up."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel

from genir.methods import get_method, make_settings
from genir.pipeline import run
from genir.settings import TrainingSettings
from genir.training import Trainer, seq2seq_loss
from genir.training.data import DocidCollator, DocidDataset, TextInputs
from tests.test_devices import DeviceAudit
from tests.test_pipeline import _slice
from tests.test_training import _setup

# bench/gpu_check.sh runs these tests on a GPU with GENIR_TEST_DEVICE=cuda
DEVICE = os.environ.get("GENIR_TEST_DEVICE", "cpu")
# per method: its settings for a tiny run, and the loss curve that must fall (train.json "history")
METHODS = {
    "dsi-atomic": {},
    "tied-atomic": {},
    "genret": {"genret": {"codes": 8, "epochs": 3, "warmup_epochs": 1, "fit_epochs": 2}},
    "glen": {"glen": {"keyword_epochs": 2, "refine_epochs": 4, "batch_size": 8, "negatives": 3}},
    "merge": {"merge": {"codes": 8, "epochs": 20, "batch_size": 64}},
}


@pytest.fixture(scope="module")
def small_slice(tmp_path_factory, shared_datasets):
    return _slice(tmp_path_factory, shared_datasets, "scifact", {"train": 30, "test": 10}, 80)


def _encoder_change(tiny_bert: str, model_dir, layers_only: bool = False) -> float:
    """Largest absolute difference between the saved model's encoder and the pretrained backbone
    (``layers_only``: its transformer layers, not the word embeddings GLEN also reaches through E)."""
    start = AutoModel.from_pretrained(tiny_bert).state_dict()
    saved = {k[len("encoder."):]: v for k, v in load_file(str(model_dir / "model.safetensors")).items()
             if k.startswith("encoder.")}
    assert set(saved) == set(start)
    # rows a method added to the vocabulary (MERGE's <retrieval>) have no pretrained value to compare with
    keys = [k for k in start if k.startswith("encoder.layer.")] if layers_only else list(start)
    return max(float((saved[k][: len(start[k])].float() - start[k].float()).abs().max()) for k in keys)


def _falls(history: list) -> bool:
    losses = [loss for _, loss in history]
    third = max(1, len(losses) // 3)
    return sum(losses[-third:]) / third < sum(losses[:third]) / third


@pytest.mark.parametrize("encoder", ["full", "frozen"])
@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_fine_tunes_the_encoder_only_when_asked(small_slice, tiny_bert, tmp_path, monkeypatch, method,
                                                            encoder):
    # every training forward (objective + model) runs under the device audit: nothing it creates may be
    # left on the default device (the check CI can make without a GPU)
    import genir.training.loop as loop

    audit, forward = DeviceAudit(), loop._ObjectiveModule.forward

    def audited(self, batch):
        with audit:
            return forward(self, batch)

    monkeypatch.setattr(loop._ObjectiveModule, "forward", audited)
    out = tmp_path / "run"
    encoder_rates = {"encoder_lr": 2e-3, "encoder_warmup_ratio": 0.0} if encoder == "full" else {}  # frozen: unread
    cfg = make_settings({"data": {"dataset": str(small_slice)}, "model": {"backbone": tiny_bert, "encoder": encoder},
                         "baselines": [], "methods": [method], "out": str(out),
                         "search": {"beam": 10} if get_method(method).decodes else {},  # Tied-Atomic: no beam
                         "training": {"epochs": 6, "batch_size": 16, "device": DEVICE, **encoder_rates},
                         **METHODS[method]})
    report = run(cfg)
    assert not report["failed"], report["failed"]
    assert audit.deviceless == [], f"{method}: tensors made without a device: {sorted(set(audit.deviceless))}"
    if encoder == "frozen":
        assert _encoder_change(tiny_bert, out / method / "model") == 0.0
    else:
        change = _encoder_change(tiny_bert, out / method / "model", layers_only=True)
        assert change > 1e-4, f"{method}: --encoder full left the encoder's layers where they were"
    info = json.loads((out / method / "train.json").read_text())
    assert info["encoder"] == encoder
    # GenRet: the fit on its final docids (its progressive losses chase targets that re-assignment moves)
    history = info["fit_history"] if method == "genret" else info["history"]
    assert _falls(history), f"{method} ({encoder}): the training loss did not fall: {history}"


def _trainer(tiny_bert, lr: float = 1e-3, **config) -> tuple:
    model, examples, targets, _ = _setup(tiny_bert, dropout=0.0)
    model.freeze_encoder(False)
    for module in model.modules():  # the backbone's own dropout too: runs must be deterministic to compare
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    data = DocidDataset(examples, targets)
    collate = DocidCollator(targets, TextInputs(examples.texts, 16, model))
    cfg = TrainingSettings(**{"epochs": 1, "lr": lr, "encoder_lr": lr, "checkpoint_every": 0, "warmup_ratio": 0.0,
                              "encoder_warmup_ratio": 0.0, **config})
    return model, Trainer(model, seq2seq_loss, data, collate, cfg, show_progress=False)


def test_gradient_accumulation_equals_the_larger_batch(tiny_bert, monkeypatch):
    # 2 micro-batches of 4 per optimiser step give the gradient of one batch of 8 over the same examples in
    # the same order (the mean loss of equal micro-batches is the loss of their union), and the epoch's
    # short last group is the mean of what it has. Rates are 0 so both runs take every gradient at the same
    # weights (AdamW would turn float noise in near-zero gradients into full-size steps).
    import genir.training.loop as loop

    grads: list[list[torch.Tensor]] = []
    clip = loop.nn.utils.clip_grad_norm_

    def record(params, max_norm):
        grads[-1].append(torch.cat([p.grad.reshape(-1) for p in params if p.grad is not None]).clone())
        return clip(params, max_norm)

    monkeypatch.setattr(loop.nn.utils, "clip_grad_norm_", record)
    runs = []
    for config in ({"batch_size": 8}, {"batch_size": 4, "grad_accumulation": 2}):
        grads.append([])
        _, trainer = _trainer(tiny_bert, lr=0.0, **config)  # same seed: the same order of examples
        runs.append(trainer.train())
    assert runs[0]["steps"] == runs[1]["steps"] == 2  # 12 examples: 8 + 4 (the last group is short)
    for big, accumulated in zip(*grads, strict=True):
        assert torch.allclose(big, accumulated, atol=1e-6, rtol=1e-4)
    # and the check can fail: one micro-batch's gradient is not the pair's
    assert not torch.allclose(grads[0][0], grads[1][0] * 2, atol=1e-6, rtol=1e-4)


def test_bf16_autocast_trains_and_is_recorded(tiny_bert):
    model, trainer = _trainer(tiny_bert, batch_size=4, precision="bf16")
    seen = []
    objective = trainer.objective

    def spy(m, batch):
        loss, logs = objective(m, batch)
        seen.append(torch.is_autocast_enabled("cpu"))
        return loss, logs

    trainer.objective = spy
    info = trainer.train()
    assert info["precision"] == "bf16" and all(seen) and seen
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_the_encoder_warms_up_on_its_own_schedule(tiny_bert):
    model, trainer = _trainer(tiny_bert, batch_size=1, encoder_warmup_ratio=0.5)
    optimizer = trainer._optimizer()
    decoder, encoder = trainer._schedules(10, optimizer)
    assert decoder(0) == pytest.approx(1.0)  # warmup_ratio 0: full rate at once
    assert encoder(0) == pytest.approx(0.2) and encoder(4) == pytest.approx(1.0)  # 5 warm-up steps
