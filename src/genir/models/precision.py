"""Search-time encoders in a lower precision (``search.encoder_precision``), through PyTorch alone (no
hand-written kernels), applied to every encoder that runs at search time, dense and generative alike; the
folders stay fp32. Their effect on nDCG@10 is measured in docs/experiments/processes-and-scale.md.

- ``int8``: the linear layers in int8 by PyTorch's dynamic quantisation
  (``torch.ao.quantization.quantize_dynamic``: weights stored in int8, activations quantised per batch).
- ``bf16``: the encoder's forward under ``torch.autocast`` in bfloat16 (matrix products in bf16, softmax and
  layer norms in fp32; fast on CPUs with AMX/AVX512-BF16), its token states handed on in fp32."""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch
from torch import nn

PRECISIONS = ("fp32", "int8", "bf16")


def int8_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` whose ``nn.Linear`` layers run in int8 (the original is left as it is)."""
    device = next(module.parameters()).device
    if device.type != "cpu":
        raise ValueError(f"search.encoder_precision=int8 runs on a CPU (PyTorch's dynamic quantisation); the "
                         f"model is on {device}: search in fp32 or bf16 there")
    with warnings.catch_warnings():  # PyTorch marks its quantised tensor types for a later move to torchao
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(module), {nn.Linear}, dtype=torch.qint8)


def _as_fp32(value: Any) -> Any:
    if torch.is_tensor(value):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, dict):  # a Hugging Face ModelOutput is a dict: set in place, its attributes follow
        for key, item in list(value.items()):
            value[key] = _as_fp32(item)
        return value
    if isinstance(value, tuple):
        return type(value)(_as_fp32(v) for v in value)
    return value


def autocast(module: nn.Module, dtype: torch.dtype = torch.bfloat16) -> torch.autocast:
    """``torch.autocast`` on the device ``module``'s weights are on."""
    return torch.autocast(next(module.parameters()).device.type, dtype=dtype)


class Bf16Encoder(nn.Module):
    """An encoder run under ``torch.autocast(bfloat16)``, its floating outputs returned in fp32: the
    decoders, poolings and scores after it see the dtype they were trained on. Shares ``inner``'s weights."""

    precision = "bf16"

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def __getattr__(self, name: str) -> Any:  # the model's own (config, get_input_embeddings, ...)
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["inner"], name)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with autocast(self.inner):
            out = self.inner(*args, **kwargs)
        return _as_fp32(out)


def encoder_in(module: nn.Module, precision: str) -> nn.Module:
    """``module`` as it runs at search time in ``precision`` (fp32: itself)."""
    if precision == "fp32":
        return module
    if precision == "int8":
        return int8_copy(module)
    if precision == "bf16":
        return Bf16Encoder(module)
    raise ValueError(f"encoder precision {precision!r}: choose one of {', '.join(PRECISIONS)}")


def with_encoder_in(model: nn.Module, precision: str) -> nn.Module:
    """A shallow copy of a docid model whose encoder (``model.encoder``) runs in ``precision``; the decoder
    and the original model as they were."""
    if precision == "fp32":
        return model
    clone = copy.copy(model)
    clone._modules = dict(model._modules)  # the copy's own module table: the original keeps its fp32 encoder
    clone.encoder = encoder_in(model.encoder, precision)
    return clone
