"""Device placement without a GPU: CI has none, so a hard-coded device must be caught on the CPU.

:class:`DeviceAudit` watches every torch call made from genir's own code while it is active and records
- tensors created without a device (``torch.zeros(n)``, ``torch.arange(n)``, ...): on a GPU they land on
  the CPU and the next operation with a CUDA tensor fails (or silently copies);
- host round trips (``.cpu()``, ``.numpy()``, ``.tolist()``, ``.item()``).
The beam search must do neither; the training objectives must create nothing without a device.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode

import genir

GENIR = str(Path(genir.__file__).parent)
DEVICE = os.environ.get("GENIR_TEST_DEVICE", "cpu")  # bench/gpu_check.sh: cuda
FACTORIES = {torch.zeros, torch.ones, torch.full, torch.empty, torch.arange, torch.tensor, torch.as_tensor,
             torch.rand, torch.randn, torch.randint, torch.randperm, torch.eye, torch.linspace}
HOST = {torch.Tensor.cpu, torch.Tensor.numpy, torch.Tensor.tolist, torch.Tensor.item}


class DeviceAudit(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.deviceless: list[str] = []
        self.host: list[str] = []

    @staticmethod
    def _caller() -> str | None:
        """file:line of the genir frame calling into torch (None when the caller is not genir: a test, or a
        library such as a tokenizer, which makes its tensors on the CPU by design before genir moves them)."""
        frame = sys._getframe(2)
        while frame is not None and "/torch/" in frame.f_code.co_filename:
            frame = frame.f_back
        if frame is not None and frame.f_code.co_filename.startswith(GENIR):
            return f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno}"
        return None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in FACTORIES and kwargs.get("device") is None:
            where = self._caller()
            if where and not (func in (torch.tensor, torch.as_tensor) and args and torch.is_tensor(args[0])):
                self.deviceless.append(f"{where} {func.__name__}")
        elif func in HOST:
            where = self._caller()
            if where:
                self.host.append(f"{where} {func.__name__}")
        return func(*args, **kwargs)


def test_the_audit_sees_a_hard_coded_device_and_a_host_round_trip():
    # the check can fail: code that would break on a GPU is seen on the CPU
    from genir.training import objectives

    audit = DeviceAudit()
    with audit:
        objectives.torch.arange(3)  # called from this test, not genir: not counted
    assert audit.deviceless == []
    source = "def f(x):\n    return torch.arange(x.shape[0]) + x.cpu()\n"
    namespace = {"torch": torch}
    exec(compile(source, f"{GENIR}/fake.py", "exec"), namespace)  # as if genir's own code
    with audit:
        namespace["f"](torch.ones(2))
    assert audit.deviceless == ["fake.py:2 arange"] and audit.host == ["fake.py:2 cpu"]


@pytest.mark.parametrize("scheme", ["semantic", "atomic"])
def test_beam_search_stays_on_the_model_device(tiny_bert, scheme):
    import numpy as np

    from genir.docids import PrefixTree, atomic_docids, semantic_docids
    from genir.models import DocidSeq2Seq, ModelConfig
    from genir.search.beam import beam_search

    ids = [f"d{i}" for i in range(40)]
    table = (semantic_docids(ids, np.random.default_rng(0).normal(size=(40, 8)), c=4) if scheme == "semantic"
             else atomic_docids(ids))
    trie = PrefixTree(table)
    model = DocidSeq2Seq(ModelConfig(n_codes=table.vocab_size, backbone=tiny_bert, decoder_heads=2, decoder_ff=64,
                                     max_docid_length=trie.depth)).eval().to(DEVICE)
    memory, mask = model.encode_texts(["a query", "another longer query here"])
    audit = DeviceAudit()
    with audit:
        nodes, scores = beam_search(model, trie, memory, mask, beam=8)
    assert audit.deviceless == [] and audit.host == [], (audit.deviceless, audit.host)
    assert torch.isfinite(scores[:, 0]).all() and nodes.device == memory.device
    # the tree's arrays follow the device asked for (a copy per device, kept)
    assert trie.on("cpu") is trie and trie.on(torch.device("cpu")) is trie


def test_a_cuda_device_without_a_gpu_is_an_error_not_a_cpu_run(monkeypatch):
    from genir.workspace import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="no CUDA device"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
