"""Stage fingerprints: a stage of a run folder is reused only when it was made the way this run would make it.

A stage (a baseline, or a method) records in ``stage.json`` what determines its output, before it writes
anything else: genir's version, the dataset's content hash, and every setting it reads (runtime settings
such as the device left out). A method's fingerprint has two parts: ``train`` (docids and model) and
``search`` (the settings only search reads: beam, k, tie-break, the test split). When a run meets a stage
folder, the recorded fingerprint must equal the current one; otherwise the run stops before any work and
names the keys that differ, unless the stage is to be recomputed (``--redo NAME`` or ``--fresh``): then
only the parts that differ are removed (a new beam re-searches the trained model; new epochs retrain).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genir.data.collection import read_json_object
from genir.io import write_json
from genir.settings import COLLECTION_KEYS, Settings, settable_fields

STAGE_FILE = "stage.json"


def flat_settings(settings: Settings, groups: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(train keys, search keys) of the named groups as ``group.key -> value``; runtime keys left out."""
    train, search = {}, {}
    for name in groups:
        group = settings.group(name)
        for key, (f, _) in settable_fields(type(group)).items():
            if f.metadata.get("runtime") or f.metadata.get("preset"):  # a preset: by the values it stands for
                continue
            value = settings.lookup(f"{name}.{key}")[0] if "fallback" in f.metadata else getattr(group, key)
            if f.metadata.get("added") and value == f.metadata.get("was", f.metadata.get("fallback", f.default)):
                continue
            part = search if f.metadata.get("search") else train
            part[f"{name}.{key}"] = list(value) if isinstance(value, tuple) else value
            if f.metadata.get("reads") and isinstance(value, str) and Path(value).exists():
                part[f"{name}.{key}.sha256"] = content_digest(Path(value))  # the file, not its name
    return train, search


_DIGESTS: dict[tuple, str] = {}


def content_digest(path: Path) -> str:
    """sha256 over a file's bytes, or over a folder's files (relative names and bytes, in name order): what
    a setting that names a path (a pseudo-query file, a teacher file, a model folder) gives a stage. Kept
    per process by (path, size, mtime) of every file."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    key = (str(path.resolve()), *((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files))
    if key not in _DIGESTS:
        h = hashlib.sha256()
        for f in files:
            h.update(str(f.relative_to(path)).encode() + b"\0" if f != path else b"")
            with open(f, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    h.update(chunk)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def _canonical(value: Any) -> Any:
    """A whole float as its int (30.0 -> 30), in lists and dicts too: a float setting whose default is
    written 30 reads 30.0 once its group is rebuilt by ``--set``, and the two are the same setting."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    return value


def _json(value: Any) -> str:
    return json.dumps(_canonical(value), sort_keys=True, default=str)


def short_hash(obj: Any) -> str:
    return hashlib.sha256(_json(obj).encode()).hexdigest()[:12]


@dataclass
class Fingerprint:
    """What determines a stage: ``train`` (its docids and model; empty for a baseline) and ``search``."""

    train: dict[str, Any] = field(default_factory=dict)
    search: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"train": self.train, "search": self.search, "hash": self.hash}

    @property
    def hash(self) -> str:
        return short_hash([self.train, self.search])


def method_fingerprint(settings: Settings, group: str | None, common: dict[str, Any]) -> Fingerprint:
    train, search = flat_settings(settings, ["data", "model", "training", "search"] + ([group] if group else []))
    if group and getattr(settings.group(group), "rank_weight", 0):  # the rank-aware loss reads the rank group
        train.update(flat_settings(settings, ["rank"])[0])
    if group and getattr(settings.group(group), "docid_encoder", "") == "trained":  # docids by the tuned encoder
        train.update(flat_settings(settings, ["dense"])[0])
    train.pop("data.data_dir", None)  # where the dataset lies: its content hash stands for it
    train["dense.model"] = settings.dense.model  # semantic docids cluster its embeddings
    if settings.dense.model and Path(settings.dense.model).exists():
        train["dense.model.sha256"] = content_digest(Path(settings.dense.model))
    return Fingerprint({**common, **train}, search)


def baseline_fingerprint(settings: Settings, name: str, common: dict[str, Any]) -> Fingerprint:
    """A baseline reads the collection settings and k; dense ones their encoder; ``dense-trained`` also
    trains (its ``train`` part: the dense group and the training settings its loop reads, ``Baseline.trains``)."""
    from genir.methods.baselines import BASELINES

    train, search = flat_settings(settings, ["data", "search", "dense", "training"])
    keys = {**train, **search}
    wanted = list(COLLECTION_KEYS) + ["search.k"]
    if settings.data.holdout or settings.data.new_docs:
        wanted.append("training.seed")  # draws the held-out queries and the new documents
    if name in ("dense", "dense-trained"):
        wanted += ["dense.model", "dense.model.sha256", "search.encoder_precision"]
    reads = BASELINES[name].trains if name in BASELINES else ()
    trained = [k for k in keys if k.startswith("dense.")] + list(reads) if reads else []
    return Fingerprint({k: keys[k] for k in trained if k in keys},  # an added setting at its default: left out
                       {**common, **{k: keys[k] for k in dict.fromkeys(wanted) if k not in trained and k in keys}})


def transfer_fingerprint(source: Path, name: str, reads: list[Path]) -> dict[str, Any]:
    """What a transfer stage adds to its fingerprint: the source run's path, its stage record, and the content
    of every source file the transfer reads (``Method.transfer_reads``), so a source retrained in place
    makes the transfer stale."""
    record = source / name / STAGE_FILE
    return {"transferred_from": str(source.resolve()),
            "source.stage": short_hash(record.read_text(encoding="utf-8")) if record.exists() else None,
            **{f"source.{p.relative_to(source)}.sha256": content_digest(p) for p in reads if p.exists()}}


def _differences(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    out = []
    for key in sorted(set(recorded) | set(current)):
        if key not in current:
            # an added setting back at its default is left out of a fingerprint, as is one genir no longer has
            out.append(f"{key} = {recorded[key]!r} there, at its default now (or no longer a setting)")
        elif key not in recorded:
            out.append(f"{key} not recorded there, {current[key]!r} now")
        elif _json(recorded[key]) != _json(current[key]):
            out.append(f"{key} = {recorded[key]!r} there, {current[key]!r} now")
    return out


@dataclass
class Stage:
    """One stage of a run folder: its record file, the files it owns, and the files its search part owns."""

    name: str
    record: Path  # stage.json
    owned: list[Path]  # everything the stage writes (removed when its train part is redone)
    search_owned: list[Path]  # what searching writes (removed when only its search part is redone)
    fingerprint: Fingerprint

    def exists(self) -> bool:
        return self.record.exists() or any(p.exists() for p in self.owned)

    def recorded(self) -> dict[str, Any] | None:
        if not self.record.exists():
            return None
        try:
            value = json.loads(self.record.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        return value if isinstance(value, dict) else None

    def differences(self) -> tuple[list[str], list[str]]:
        """(train differences, search differences) between the folder's record and this run."""
        if not self.exists():
            return [], []
        rec = self.recorded()
        if rec is None:
            return [f"{self.record} is missing or unreadable: made by an earlier genir, or cut short"], []
        return (_differences(rec.get("train") or {}, self.fingerprint.train),
                _differences(rec.get("search") or {}, self.fingerprint.search))

    def start(self) -> None:
        """Record the fingerprint before the stage writes anything else (a killed stage is checked too)."""
        write_json(self.record, self.fingerprint.to_dict())

    def clear(self, search_only: bool) -> None:
        from genir.distributed import is_main

        if not is_main():  # several processes: rank 0 removes, the others wait at the pipeline's barrier
            return
        for p in (self.search_owned if search_only else [*self.owned, self.record]):
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()


class StaleStageError(ValueError):
    """A run folder holds stages made with other settings or data; the message names the keys."""


def check_stages(stages: list[Stage], redo: set[str], fresh: bool, out: Path) -> None:
    """Before any work: stages to recompute (``--redo NAME``, ``--fresh``) are cleared: the part that differs,
    or the whole stage where nothing differs; any other stage whose record differs from this run stops the run
    with every difference named."""
    problems = []
    for stage in stages:
        train, search = stage.differences()
        if fresh or stage.name in redo:  # recomputed: only the part that differs, or all of an unchanged stage
            if train or search or stage.exists():
                stage.clear(search_only=bool(search) and not train)
            continue
        if not (train or search):
            continue
        problems.append(f"  {stage.name}:\n" + "\n".join(f"    {d}" for d in train + search))
    if problems:
        names = " ".join(f"--redo {p.split(':')[0].strip()}" for p in problems)
        raise StaleStageError(
            f"{out} holds stages made with other settings or data; nothing was run:\n" + "\n".join(problems)
            + f"\nRecompute them with {names} (or --fresh for every stage), or choose another --out.")


def check_identities(out: Path, methods: list[str], redo: set[str], fresh: bool) -> None:
    """A method folder in ``out`` is what its own record (``retriever.json``, or its model's) says, not what
    its name says: a folder renamed from another method is refused, never reused as this one."""
    for name in methods:
        folder = Path(out) / name
        record, model = folder / "retriever.json", folder / "model" / "genir_model.json"
        said = None  # read as every genir JSON file is: a damaged one is named, not a traceback
        if record.is_file():
            said = read_json_object(record).get("name")
        elif model.is_file():
            extra = read_json_object(model).get("extra")
            said = extra.get("method") if isinstance(extra, dict) else None
        if said and said != name and name not in redo and not fresh:
            raise ValueError(f"{folder}: its record says it is {said}, not {name} (a renamed folder?); move it "
                             f"away, or recompute it with --redo {name}")
