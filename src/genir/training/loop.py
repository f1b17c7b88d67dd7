"""The training loop every method uses.

- Runs unchanged under ``torchrun``: when torch.distributed is initialised, batches are sharded with a
  DistributedSampler and the objective runs inside DistributedDataParallel; only rank 0 writes.
- Checkpoints (trainable weights, optimiser, scheduler, position in the epoch, loss history) are written
  to a temporary file and renamed, so a killed run never leaves half a checkpoint, and resumes from the
  last one at the same batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler
from tqdm.auto import tqdm

from genir.io import atomic_path

Objective = Callable[[nn.Module, dict], tuple[torch.Tensor, dict]]


@dataclass
class TrainConfig:
    epochs: float = 10
    batch_size: int = 128
    lr: float = 1e-3  # decoder, code embeddings and heads (trained from scratch)
    encoder_lr: float = 5e-5  # pretrained encoder, when it is fine-tuned
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 200  # steps; a checkpoint is also written at the end of every epoch


class _ObjectiveModule(nn.Module):
    """Model + objective as one module, so DDP's forward (and gradient sync) covers the whole loss."""

    def __init__(self, model: nn.Module, objective: Objective):
        super().__init__()
        self.model, self.objective = model, objective

    def forward(self, batch: dict):
        return self.objective(self.model, batch)


def _dist() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class Trainer:
    def __init__(self, model: nn.Module, objective: Objective, dataset: Dataset, collate: Callable,
                 config: TrainConfig, checkpoint_dir: str | Path | None = None, show_progress: bool = True,
                 desc: str = "train"):
        self.model, self.objective, self.dataset, self.collate = model, objective, dataset, collate
        self.config, self.desc = config, desc
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.rank, self.world = _dist()
        self.show_progress = show_progress and self.rank == 0
        self.history: list[tuple[int, float]] = []

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

    def _save(self, path: Path, optimizer, scheduler, epoch: int, step_in_epoch: int, step: int) -> None:
        if self.rank != 0:
            return
        with atomic_path(path) as tmp:
            torch.save({"model": self._trainable_state(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "epoch": epoch, "step_in_epoch": step_in_epoch,
                        "step": step, "history": self.history, "config": asdict(self.config),
                        "world": self.world}, tmp)

    def train(self) -> dict:
        cfg = self.config
        torch.manual_seed(cfg.seed)
        module = _ObjectiveModule(self.model, self.objective)
        if self.world > 1:
            module = nn.parallel.DistributedDataParallel(module)
        optimizer = self._optimizer()
        steps_per_epoch = math.ceil(len(self.dataset) / (cfg.batch_size * self.world))
        total_steps = max(1, math.ceil(steps_per_epoch * cfg.epochs))
        warmup = int(total_steps * cfg.warmup_ratio)

        def schedule(step: int) -> float:  # linear warm-up, then cosine decay to 10%
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(1, total_steps - warmup)
            return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        epoch, skip, step = 0, 0, 0
        ckpt = self.checkpoint_dir / "last.pt" if self.checkpoint_dir else None
        if ckpt and ckpt.exists():
            state = torch.load(ckpt, map_location="cpu", weights_only=True)  # tensors and plain values only
            self.model.load_state_dict(state["model"], strict=False)
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            epoch, skip, step, self.history = (state["epoch"], state["step_in_epoch"], state["step"],
                                               state["history"])
            if self.rank == 0:
                tqdm.write(f"{self.desc}: resumed from {ckpt} at step {step}")
        start = time.perf_counter()
        self.model.train()
        frozen_encoder = not any(p.requires_grad for n, p in self.model.named_parameters()
                                 if n.startswith("encoder."))
        device = next(self.model.parameters()).device
        bar = tqdm(total=total_steps, initial=step, desc=self.desc, disable=not self.show_progress)
        last_logs: dict = {}
        while step < total_steps:
            if self.world > 1:
                sampler = DistributedSampler(self.dataset, shuffle=True, seed=cfg.seed)
                sampler.set_epoch(epoch)
            else:
                sampler = RandomSampler(self.dataset, generator=torch.Generator().manual_seed(cfg.seed + epoch))
            loader = DataLoader(self.dataset, batch_size=cfg.batch_size, sampler=sampler,
                                collate_fn=self.collate, drop_last=False)
            for i, batch in enumerate(loader):
                if i < skip:
                    continue
                if frozen_encoder and hasattr(self.model, "encoder"):
                    self.model.encoder.eval()
                batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
                loss, last_logs = module(batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                step += 1
                self.history.append((step, float(loss.detach())))
                bar.update(1)
                bar.set_postfix({k: f"{v:.3f}" for k, v in last_logs.items()}, refresh=False)
                if ckpt and cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                    self._save(ckpt, optimizer, scheduler, epoch, i + 1, step)
                if step >= total_steps:
                    break
            epoch, skip = epoch + 1, 0
            if ckpt:
                self._save(ckpt, optimizer, scheduler, epoch, 0, step)
        bar.close()
        self.model.eval()
        return {"steps": step, "seconds": time.perf_counter() - start, "final": last_logs,
                "epochs": cfg.epochs, "world_size": self.world}
