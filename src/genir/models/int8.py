"""Int8 search on a CPU: the encoder's linear layers in int8 by PyTorch's own dynamic quantisation
(``torch.ao.quantization.quantize_dynamic``: weights stored in int8, activations quantised per batch; no
hand-written kernels). ``search.encoder_precision=int8`` applies it to every encoder that runs at search time,
dense and generative alike; its effect on nDCG@10 is measured in docs/experiments/processes-and-scale.md."""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn


def int8_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` whose ``nn.Linear`` layers run in int8 (the original is left as it is)."""
    device = next(module.parameters()).device
    if device.type != "cpu":
        raise ValueError(f"search.encoder_precision=int8 runs on a CPU (PyTorch's dynamic quantisation); the "
                         f"model is on {device}: search in fp32 there")
    with warnings.catch_warnings():  # PyTorch marks its quantised tensor types for a later move to torchao
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(module), {nn.Linear}, dtype=torch.qint8)


def with_int8_encoder(model: nn.Module) -> nn.Module:
    """A copy of a docid model whose encoder (``model.encoder``) runs in int8; the decoder as it was."""
    clone = copy.copy(model)
    clone._modules = dict(model._modules)  # the copy's own module table: the original keeps its fp32 encoder
    clone.encoder = int8_copy(model.encoder)
    return clone
