"""The training loop under torch.distributed (gloo, 2 CPU processes): shards the data, keeps ranks in sync."""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, backbone: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        from genir.training import TrainConfig, Trainer, seq2seq_loss
        from genir.training.data import DocidCollator, DocidDataset, TextInputs
        from tests.test_training import _setup

        model, examples, targets, encoded = _setup(backbone)
        torch.manual_seed(rank)  # different start per rank: DDP must broadcast rank 0's weights
        trainer = Trainer(model, seq2seq_loss, DocidDataset(examples, targets),
                          DocidCollator(targets, TextInputs(examples.texts, 16, model, encoded)),
                          TrainConfig(epochs=2, batch_size=3, checkpoint_every=1), out, show_progress=False)
        info = trainer.train()
        flat = torch.cat([p.detach().reshape(-1) for p in model.parameters() if p.requires_grad])
        gathered = [torch.zeros_like(flat) for _ in range(world)]
        dist.all_gather(gathered, flat)
        assert torch.allclose(gathered[0], gathered[1]), "ranks diverged"
        assert info["world_size"] == world
        assert info["steps"] == 2 * 2  # 12 examples / (3 per rank x 2 ranks) = 2 steps per epoch
    finally:
        dist.destroy_process_group()


def test_two_process_gloo_training(tiny_bert, tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), tiny_bert, str(tmp_path / "ckpt")), nprocs=2, join=True)
    from genir.training.checkpoint import load_latest

    _, meta, path = load_latest(tmp_path / "ckpt")  # only rank 0 writes it
    assert path.name == "step-00000004" and meta["world"] == 2
