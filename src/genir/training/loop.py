"""The training loop every method uses.

- Runs unchanged under ``torchrun``: when torch.distributed is initialised, each step's global batch is
  split across processes (see ``_batches``) and the objective runs inside DistributedDataParallel (every
  rank starts from rank 0's weights); only rank 0 writes.
- Checkpoints (``genir.training.checkpoint``: safetensors + JSON) hold the trainable weights, optimiser,
  scheduler, position in the epoch, loss history and every random generator, so that a killed run resumes
  at the same batch on the same trajectory: the resumed run's weights equal the uninterrupted run's.
- A fresh run seeds every generator from the seed and the run's name, so each training run's randomness
  is its own, whatever ran before it in the process.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, fields, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

import genir.distributed as distributed
import genir.training.checkpoint as checkpoint
from genir.settings import TrainingSettings, resolve_group

Objective = Callable[[nn.Module, dict], tuple[torch.Tensor, dict]]


def planned_steps(examples: int, batch_size: int, epochs: float, grad_accumulation: int = 1, world: int = 1) -> int:
    """The optimiser steps a phase takes: what the loop runs and ``genir run --dry-run`` shows."""
    micro_per_epoch = math.ceil(examples / (batch_size * world))
    return max(1, math.ceil(math.ceil(micro_per_epoch / max(1, grad_accumulation)) * epochs))


def comparable(config: TrainingSettings) -> dict:
    """The settings a checkpoint must share to resume: how a run goes (device, checkpoint interval,
    gradient checkpointing) left out."""
    return {f.name: getattr(config, f.name) for f in fields(config) if not f.metadata.get("runtime")}


class _ObjectiveModule(nn.Module):
    """Model + objective as one module, so DDP's forward (and gradient sync) covers the whole loss."""

    def __init__(self, model: nn.Module, objective: Objective):
        super().__init__()
        self.model, self.objective = model, objective

    def forward(self, batch: dict):
        return self.objective(self.model, batch)


class Trainer:
    def __init__(self, model: nn.Module, objective: Objective, dataset: Dataset, collate: Callable,
                 config: TrainingSettings, checkpoint_dir: str | Path | None = None, show_progress: bool = True,
                 desc: str = "train", after_epoch: Callable[[nn.Module], dict] | None = None):
        """``after_epoch``: (model in eval mode) -> figures, called in process 0 at the end of every epoch (a
        held-out evaluation); the figures are kept per step in ``evaluations`` and in checkpoints. It must
        not change the trajectory: the random generators are restored after it."""
        self.model, self.objective, self.dataset, self.collate = model, objective, dataset, collate
        self.after_epoch = after_epoch
        self.evaluations: list[tuple[int, dict]] = []
        self.config, self.desc = replace(config, **resolve_group(config)), desc  # unset budgets: defaults
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.rank, self.world = distributed.rank(), distributed.world()
        self.show_progress = show_progress and self.rank == 0
        self.history: list[tuple[int, float]] = []
        self._last_logs: dict = {}  # the last step's logged figures (kept in checkpoints)
        self._resumed_logs: dict = {}
        # training seconds of the processes before a resume (from the checkpoint), and this one's start: a
        # resumed run reports the time its steps took in all of them, not only in the last
        self._seconds_before, self._start = 0.0, time.perf_counter()

    def _optimizer(self) -> torch.optim.Optimizer:
        enc, rest = [], []
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                (enc if name.startswith("encoder.") else rest).append(p)
        groups = [{"params": rest, "lr": self.config.lr}]
        if enc:
            groups.append({"params": enc, "lr": self.config.encoder_lr})
        return torch.optim.AdamW(groups, weight_decay=self.config.weight_decay)

    def _trainable_state(self) -> dict[str, torch.Tensor]:
        trainable = {n for n, p in self.model.named_parameters() if p.requires_grad}
        # buffers and trainable weights; a frozen encoder is not copied into every checkpoint
        return {k: v for k, v in self.model.state_dict().items()
                if k in trainable or not k.startswith("encoder.")}

    def _generators(self) -> dict:
        return checkpoint.find_generators({"dataset": self.dataset, "collate": self.collate,
                                           "objective": self.objective})

    def _stateful(self) -> dict:
        """Parts whose state the trajectory depends on beyond weights and generators: they expose
        ``checkpoint_state() -> {name: tensor}`` and ``load_checkpoint_state(state)``."""
        parts = {"dataset": self.dataset, "collate": self.collate, "objective": self.objective}
        return {k: v for k, v in parts.items() if hasattr(v, "checkpoint_state")}

    def _seed_everything(self) -> None:
        """A fresh run: every generator seeded from (seed, this run's name), so that its randomness does
        not depend on what ran before it (and a run resumed after a kill between runs draws the same)."""
        seed, name = self.config.seed, self.desc
        seed_everything(seed)
        for key, gen in self._generators().items():
            sub = int.from_bytes(hashlib.sha256(f"{seed}:{name}:{key}".encode()).digest()[:8], "little")
            if isinstance(gen, random.Random):
                gen.seed(sub)
            elif isinstance(gen, np.random.Generator):
                gen.bit_generator.state = np.random.default_rng(sub).bit_generator.state
            elif isinstance(gen, np.random.RandomState):
                gen.seed(sub % 2**32)
            else:
                gen.manual_seed(sub)

    def _save(self, optimizer, scheduler, epoch: int, step_in_epoch: int, step: int) -> None:
        if self.rank != 0 or self.checkpoint_dir is None:
            return
        tensors = {f"model.{k}": v for k, v in self._trainable_state().items()}
        for name, part in self._stateful().items():  # e.g. GenRet's corpus bank, GLEN's epoch and identifiers
            tensors.update({f"state.{name}.{k}": v for k, v in part.checkpoint_state().items()})
        meta = {"optimizer": checkpoint.optimizer_to_flat(optimizer.state_dict(), tensors),
                "scheduler": scheduler.state_dict(), "epoch": epoch, "step_in_epoch": step_in_epoch, "step": step,
                "history": self.history, "evaluations": self.evaluations,
                "final": self._last_logs, "config": asdict(self.config), "world": self.world,
                "seconds": self._seconds_before + time.perf_counter() - self._start,
                "random": checkpoint.capture_random_state(self._generators(), tensors)}
        checkpoint.save(self.checkpoint_dir, step, tensors, meta)

    def _load(self, optimizer, scheduler) -> tuple[int, int, int] | None:
        """(epoch, step in epoch, step) of the newest checkpoint, with every state restored; None: fresh."""
        found = checkpoint.load_latest(self.checkpoint_dir) if self.checkpoint_dir else None
        if found is None:
            return None
        tensors, meta, path = found
        same = comparable(self.config)
        if {k: meta.get("config", {}).get(k) for k in same} != same or meta.get("world") != self.world:
            raise checkpoint.CheckpointError(f"{path}: made with other training settings "
                                             f"({meta.get('config')}, {meta.get('world')} processes)")
        load_weights(self.model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, path,
                     may_lack="encoder.")
        optimizer.load_state_dict(checkpoint.optimizer_from_flat(meta["optimizer"], tensors))
        scheduler.load_state_dict(meta["scheduler"])
        checkpoint.restore_random_state(meta["random"], self._generators(), tensors)
        for name, part in self._stateful().items():
            prefix = f"state.{name}."
            part.load_checkpoint_state({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
        self.history = [tuple(h) for h in meta["history"]]
        self.evaluations = [tuple(e) for e in meta.get("evaluations", [])]
        self._resumed_logs = self._last_logs = meta.get("final", {})
        self._seconds_before = float(meta.get("seconds", 0.0))  # 0: a checkpoint from before it was kept
        if self.rank == 0:
            tqdm.write(f"{self.desc}: resumed from {path} at step {meta['step']}")
        return meta["epoch"], meta["step_in_epoch"], meta["step"]

    def _batches(self, epoch: int, skip: int) -> tuple[DataLoader, list[tuple[float, int]]]:
        """This epoch's batches from batch ``skip`` on, and each batch's (loss weight, examples in it).

        The epoch's order is a function of (seed, epoch) alone, the same in every process. A step takes one
        global batch of ``batch_size x world`` examples; process r takes every world-th of them from the r-th
        (so 2 processes x batch B see exactly the examples 1 process x batch 2B sees, and every example once
        per epoch: DistributedSampler would repeat examples to even out the shards). A share's loss is
        weighted by its size x world / the global batch's size, so that DDP's mean over processes is the mean
        over the global batch even when the last one does not split evenly. The batches before ``skip`` are
        not drawn again (so no collator draws twice)."""
        cfg, world, rank = self.config, self.world, self.rank
        generator = torch.Generator().manual_seed(cfg.seed + epoch)
        order = torch.randperm(len(self.dataset), generator=generator).tolist()
        step = cfg.batch_size * world
        shares, weights = [], []
        for start in range(skip * step, len(order), step):
            whole = order[start: start + step]
            mine = whole[rank::world]
            weights.append((len(mine) * world / len(whole), len(mine)))
            shares.append(mine or whole[:1])  # an empty share still steps (DDP): one example at weight 0
        # a generator of its own: a DataLoader draws a worker seed when iterated, which would otherwise take
        # a number from the global generator (dropout's) at a moment a resumed run does not repeat
        loader = DataLoader(self.dataset, batch_sampler=shares, collate_fn=self.collate,
                            generator=torch.Generator().manual_seed(epoch))
        return loader, weights

    def _autocast(self, device: torch.device):
        """bf16 autocast when asked for (and the device has bf16), else a no-op context."""
        if self.config.precision == "fp32":
            return contextlib.nullcontext()
        if self.config.precision != "bf16":
            raise ValueError(f"precision must be fp32 or bf16, not {self.config.precision!r}")
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError(f"precision bf16: {torch.cuda.get_device_name(device)} has no bf16; use fp32")
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)

    def _schedules(self, total_steps: int, optimizer) -> list[Callable[[int], float]]:
        """Per parameter group (decoder first, then the encoder): linear warm-up, then cosine decay to 10%."""
        cfg = self.config

        def schedule(warmup: int) -> Callable[[int], float]:
            def factor(step: int) -> float:
                if step < warmup:
                    return (step + 1) / warmup
                progress = (step - warmup) / max(1, total_steps - warmup)
                return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
            return factor

        enc_ratio = cfg.warmup_ratio if cfg.encoder_warmup_ratio is None else cfg.encoder_warmup_ratio
        ratios = [cfg.warmup_ratio, enc_ratio][: len(optimizer.param_groups)]
        return [schedule(int(total_steps * r)) for r in ratios]

    def _encoder_trainable(self) -> bool:
        return any(p.requires_grad for n, p in self.model.named_parameters() if n.startswith("encoder."))

    def train(self) -> dict:
        cfg = self.config
        self._seed_everything()
        trains_encoder = self._encoder_trainable()
        if cfg.gradient_checkpointing and trains_encoder and hasattr(self.model, "encoder"):
            enable = getattr(self.model.encoder, "gradient_checkpointing_enable", None)
            if enable is None or not getattr(self.model.encoder, "supports_gradient_checkpointing", False):
                raise ValueError(f"gradient checkpointing: {type(self.model.encoder).__name__} does not support it")
            enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        module = _ObjectiveModule(self.model, self.objective)
        if self.world > 1:
            device = next(self.model.parameters()).device
            # every rank starts from rank 0's weights (DDP broadcasts them here); parameters a loss leaves
            # unused (Tied-Atomic's code head, later GenRet codebooks) must not stall the gradient all-reduce
            module = nn.parallel.DistributedDataParallel(
                module, device_ids=[device] if device.type == "cuda" else None, find_unused_parameters=True)
        optimizer = self._optimizer()
        accum = max(1, cfg.grad_accumulation)
        total_steps = planned_steps(len(self.dataset), cfg.batch_size, cfg.epochs, accum, self.world)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self._schedules(total_steps, optimizer))
        self._start = time.perf_counter()
        epoch, skip, step = self._load(optimizer, scheduler) or (0, 0, 0)
        resumed_at = step or None
        self.model.train()
        device = next(self.model.parameters()).device
        bar = tqdm(total=total_steps, initial=step, desc=self.desc, disable=not self.show_progress)
        last_logs: dict = dict(self._resumed_logs)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        examples = 0
        while step < total_steps:
            pending = 0  # micro-batches whose gradients wait for the optimiser step
            batches, weights = self._batches(epoch, skip)
            last_micro = skip + len(batches) - 1
            for i, batch in enumerate(batches, skip):
                if not trains_encoder and hasattr(self.model, "encoder"):
                    self.model.encoder.eval()  # a frozen encoder: no dropout either
                batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
                with self._autocast(device):
                    loss, last_logs = module(batch)
                weight, size = weights[i - skip]
                if weight != 1.0:  # an uneven share of the global batch (several processes)
                    loss = loss * weight
                if pending == 0:
                    optimizer.zero_grad(set_to_none=True)
                    step_loss = 0.0
                (loss / accum).backward()
                step_loss += float(loss.detach()) / accum
                examples += size
                pending += 1
                self._last_logs = last_logs
                if pending < accum and i < last_micro:
                    continue
                if pending < accum:  # the epoch's last, short group: its gradient is the mean of what it has
                    for p in trainable:
                        if p.grad is not None:
                            p.grad.mul_(accum / pending)
                pending = 0
                if cfg.grad_clip:
                    nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                step += 1
                self.history.append((step, step_loss))
                bar.update(1)
                bar.set_postfix({k: f"{v:.3f}" for k, v in last_logs.items()}, refresh=False)
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                    self._save(optimizer, scheduler, epoch, i + 1, step)
                if step >= total_steps:
                    break
            epoch, skip = epoch + 1, 0
            self._evaluate(step)
            self._save(optimizer, scheduler, epoch, 0, step)
        bar.close()
        self.model.eval()
        own = time.perf_counter() - self._start  # this process's share
        return {"steps": step, "seconds": self._seconds_before + own, "resumed_at_step": resumed_at,
                "final": last_logs, "epochs": cfg.epochs,
                "world_size": self.world, "examples_per_second": examples / max(own, 1e-9),
                "encoder_trained": trains_encoder, "precision": cfg.precision,
                "evaluations": [list(e) for e in self.evaluations]}

    def _evaluate(self, step: int) -> None:
        """``after_epoch`` on the current weights (process 0; the others wait), every generator as it was."""
        if self.after_epoch is None:
            return
        if self.rank == 0:
            py_state, np_state = random.getstate(), np.random.get_state()
            devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
            with torch.random.fork_rng(devices=devices), torch.inference_mode():
                self.model.eval()
                figures = self.after_epoch(self.model)
            random.setstate(py_state)
            np.random.set_state(np_state)
            self.model.train()
            self.evaluations.append((step, figures))
            tqdm.write(f"{self.desc}: step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in figures.items()
                                                                  if isinstance(v, float)))
        distributed.barrier()


def seed_everything(seed: int) -> None:
    """The global generators (torch, Python, NumPy) from one seed."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str | Path, may_lack: str = "") -> None:
    """Strict loading: every weight of ``state`` must belong to the model with its shape, and every model
    weight must be in ``state`` (except those under ``may_lack``, e.g. a frozen encoder not saved)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state and not (may_lack and k.startswith(may_lack))]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = [f"{len(v)} {what} (e.g. {v[0]})" for what, v in
                 (("missing weights", missing), ("unknown weights", unexpected), ("weights of another shape", shapes))
                 if v]
        raise checkpoint.CheckpointError(f"{source}: does not fit the model: " + "; ".join(parts))
    model.load_state_dict(state, strict=False)
