"""Training checkpoints as plain folders: ``state.safetensors`` (tensors) + ``meta.json`` (everything else).

No pickle: a checkpoint in a run folder someone sent you is read as tensors and JSON, never as code.
Each checkpoint is written to a temporary folder, flushed to disk and renamed (``genir.io.atomic_path``);
the previous one is removed only after the new one is complete, so a kill at any moment leaves a good
checkpoint behind. A checkpoint holds what the trajectory depends on: weights, optimiser and scheduler
state, the position in the epoch, and every random generator (torch, CUDA, Python, NumPy, and the
generators of the dataset, collator and objective), so that a resumed run continues the uninterrupted one.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from genir.distributed import is_main
from genir.io import PREVIOUS, TEMPORARY, atomic_path

PREFIX = "step-"
KEEP = 2  # the newest checkpoint and the one before it
CHECKPOINT = re.compile(rf"{PREFIX}\d+")
# a checkpoint, or what atomic_path left of an interrupted write of one
LEFTOVER = re.compile(rf"{CHECKPOINT.pattern}({re.escape(TEMPORARY)}|{re.escape(PREVIOUS)})?")


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be read back."""


# -- random generators ------------------------------------------------------------------------------
def find_generators(roots: dict[str, Any], depth: int = 3) -> dict[str, Any]:
    """``path -> generator`` for every random.Random, numpy Generator/RandomState and torch.Generator held
    (up to ``depth`` attributes deep) by the ``roots`` (dataset, collator, objective); models are not
    searched (their randomness is torch's global generator)."""
    found: dict[str, Any] = {}
    seen: set[int] = set()

    def visit(obj: Any, path: str, level: int) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, (random.Random, np.random.Generator, np.random.RandomState, torch.Generator)):
            found[path] = obj
            return
        if level >= depth or not hasattr(obj, "__dict__") or isinstance(obj, (type, types.ModuleType, nn.Module)):
            return
        for name, value in vars(obj).items():
            visit(value, f"{path}.{name}", level + 1)

    for name, root in roots.items():
        visit(root, name, 0)
    return found


def _generator_state(gen: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(gen, random.Random):
        return {"python": _jsonable(gen.getstate())}
    if isinstance(gen, np.random.Generator):
        return {"numpy_generator": gen.bit_generator.state}
    if isinstance(gen, np.random.RandomState):
        name, keys, pos, has_gauss, cached = gen.get_state()
        tensors[f"rng.{key}"] = torch.from_numpy(keys.astype(np.int64))
        return {"numpy_random_state": [name, pos, has_gauss, cached]}
    tensors[f"rng.{key}"] = gen.get_state()
    return {"torch": True}


def _set_generator_state(gen: Any, key: str, state: dict, tensors: dict[str, torch.Tensor]) -> None:
    if "python" in state:
        version, internal, gauss = state["python"]
        gen.setstate((version, tuple(internal), gauss))
    elif "numpy_generator" in state:
        gen.bit_generator.state = state["numpy_generator"]
    elif "numpy_random_state" in state:
        name, pos, has_gauss, cached = state["numpy_random_state"]
        gen.set_state((name, tensors[f"rng.{key}"].numpy().astype(np.uint32), pos, has_gauss, cached))
    else:
        gen.set_state(tensors[f"rng.{key}"])


def _jsonable(x: Any) -> Any:
    return [_jsonable(v) for v in x] if isinstance(x, (tuple, list)) else x


def capture_random_state(generators: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict:
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    name, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(keys.astype(np.int64))
    return {"python": _jsonable(random.getstate()), "numpy": [name, pos, has_gauss, cached],
            "objects": {k: _generator_state(g, k, tensors) for k, g in generators.items()}}


def restore_random_state(meta: dict, generators: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))
    name, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    recorded = meta.get("objects", {})
    if set(recorded) != set(generators):
        raise CheckpointError(f"the checkpoint's random generators ({', '.join(sorted(recorded)) or 'none'}) "
                              f"are not this run's ({', '.join(sorted(generators)) or 'none'})")
    for key, gen in generators.items():
        _set_generator_state(gen, key, recorded[key], tensors)


# -- optimiser state as tensors + JSON --------------------------------------------------------------
def optimizer_to_flat(state: dict, tensors: dict[str, torch.Tensor]) -> dict:
    plain: dict[str, dict] = {}
    for idx, slots in state["state"].items():
        for name, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"optim.{idx}.{name}"] = value
            else:
                plain.setdefault(str(idx), {})[name] = value
    return {"param_groups": state["param_groups"], "plain": plain}


def optimizer_from_flat(meta: dict, tensors: dict[str, torch.Tensor]) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    for idx, slots in meta["plain"].items():
        state.setdefault(int(idx), {}).update(slots)
    return {"state": state, "param_groups": meta["param_groups"]}


# -- the folders ------------------------------------------------------------------------------------
def save(folder: Path, step: int, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
    """Write ``folder/step-NNNNNNNN`` atomically, then remove all but the newest ``KEEP`` checkpoints."""
    target = Path(folder) / f"{PREFIX}{step:08d}"
    with atomic_path(target) as tmp:
        tmp.mkdir(parents=True)
        plain = {k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()}  # no shared storage
        save_file(plain, str(tmp / "state.safetensors"))
        (tmp / "meta.json").write_text(json.dumps(meta, default=float), encoding="utf-8")
    for old in checkpoints(folder)[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def discard(root: Path) -> int:
    """Remove every checkpoint under ``root`` (with the leftovers of an interrupted write, and the folders
    left empty below ``root``): called once what they trained is saved for good (a stage's model, a finished
    GenRet step), since nothing resumes from them then and each is several times the model's size (weights
    and two optimiser moments). The bytes freed."""
    root, freed = Path(root), 0
    if not is_main() or not root.is_dir():  # rank 0 alone writes and removes
        return freed
    for found in sorted(p for p in root.rglob(f"{PREFIX}*") if p.is_dir() and LEFTOVER.fullmatch(p.name)):
        freed += sum(f.stat().st_size for f in found.rglob("*") if f.is_file())
        shutil.rmtree(found, ignore_errors=True)
        parent = found.parent
        while parent != root and not any(parent.iterdir()):  # found lies under root: the walk stops there
            parent.rmdir()
            parent = parent.parent
    return freed


def checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary folders of an interrupted write are not listed)."""
    if not Path(folder).is_dir():
        return []
    return sorted(p for p in Path(folder).iterdir() if p.is_dir() and CHECKPOINT.fullmatch(p.name))


def load_latest(folder: Path) -> tuple[dict[str, torch.Tensor], dict, Path] | None:
    """The newest checkpoint that reads back (tensors, meta, its folder); None when there is none.
    A damaged newest checkpoint falls back to the previous one; when none reads, a CheckpointError."""
    found = checkpoints(folder)
    problems = []
    for path in reversed(found):
        try:
            meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
            return load_file(str(path / "state.safetensors")), meta, path
        except Exception as e:  # noqa: BLE001 - any damage: try the previous checkpoint
            problems.append(f"{path}: {e}")
    if problems:
        raise CheckpointError("no checkpoint reads back: " + "; ".join(problems))
    return None
