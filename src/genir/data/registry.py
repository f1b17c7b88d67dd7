"""Find a dataset: a path is read where it points; a name resolves to exactly one place.

A name (``scifact``) is looked up as ``--data-dir/NAME`` when ``--data-dir`` is given (and nowhere else);
otherwise as ``$GENIR_DATASETS/NAME``, then ``$GENIR_CACHE/datasets/NAME``, then it is downloaded from the
public BEIR archive into the cache. The first of these folders that exists is the dataset: if it lacks a
file, that is an error, never a fall-back to the next place. A folder in the working directory is read
only when written as a path (``./scifact``), so a stray ``./scifact`` cannot shadow the dataset named.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

from genir.data.collection import Collection, DataError, load_beir

BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"
BEIR_DATASETS = (
    "msmarco", "trec-covid", "nfcorpus", "nq", "hotpotqa", "fiqa", "arguana", "webis-touche2020",
    "cqadupstack", "quora", "dbpedia-entity", "scidocs", "fever", "climate-fever", "scifact",
)


def cache_dir() -> Path:
    return Path(os.environ.get("GENIR_CACHE", Path.home() / ".cache" / "genir")) / "datasets"


def _is_beir_folder(p: Path) -> bool:
    from genir.data.esci import is_esci_folder

    return ((p / "corpus.jsonl").is_file() and (p / "queries.jsonl").is_file()) or is_esci_folder(p)


def resolve_dataset(name_or_path: str | Path, data_dir: str | Path | None = None,
                    download: bool = True) -> Path:
    """The folder holding ``name_or_path``; fetches a BEIR dataset into the cache when nowhere else."""
    name = str(name_or_path)
    if _is_path(name):
        p = Path(name).expanduser()
        if not p.exists():
            raise DataError(p, None, "no such dataset folder")
        _require_complete(p)
        return p
    if data_dir:
        places = [Path(data_dir).expanduser()]
        if not places[0].is_dir():
            raise DataError(places[0], None, "--data-dir is not a folder")
    else:
        places = [Path(os.environ["GENIR_DATASETS"]).expanduser()] if os.environ.get("GENIR_DATASETS") else []
        places.append(cache_dir())
    for base in places:
        if (base / name).exists():
            _require_complete(base / name)
            return base / name
    if name.startswith("esci"):  # ESCI is not a BEIR archive: the user points at the release's tables
        raise DataError(name, None, "ESCI is read from a local folder holding the release's "
                                    "shopping_queries_dataset_{examples,products} tables (github.com/amazon-"
                                    "science/esci-data); give --dataset that folder, or put it under --data-dir")
    looked = ", ".join(str(b / name) for b in places)
    if data_dir:
        raise DataError(Path(data_dir) / name, None, "no such dataset folder under --data-dir")
    if not download:
        raise DataError(name, None, f"dataset not found (looked in {looked}) and downloading is off")
    if name not in BEIR_DATASETS and not os.environ.get("GENIR_BEIR_URL"):
        raise DataError(name, None, f"no dataset of this name (looked in {looked}); the public BEIR archive "
                                    f"holds {', '.join(BEIR_DATASETS)}; a folder is given as a path (./{name})")
    return fetch_beir(name)


def _is_path(name: str) -> bool:
    return (os.sep in name or (os.altsep or os.sep) in name or name.startswith((".", "~"))
            or Path(name).is_absolute())


def _require_complete(folder: Path) -> None:
    if not folder.is_dir():
        raise DataError(folder, None, "not a folder (expected corpus.jsonl, queries.jsonl, qrels/)")
    if not _is_beir_folder(folder):
        for f in ("corpus.jsonl", "queries.jsonl"):
            if (folder / f).is_symlink() and not (folder / f).exists():
                raise DataError(folder / f, None, "a symbolic link to nothing (or a loop of links)")
            if (folder / f).exists() and not (folder / f).is_file():
                raise DataError(folder / f, None, "not a regular file (a folder?)")
        missing = [f for f in ("corpus.jsonl", "queries.jsonl") if not (folder / f).is_file()]
        raise DataError(folder, None, f"incomplete dataset folder: no {' and no '.join(missing)} (BEIR), nor "
                                      "ESCI's shopping_queries_dataset_examples table")


def fetch_beir(name: str, url: str | None = None) -> Path:
    """Download and unpack a BEIR archive into the cache. A failure leaves the cache as it was."""
    url = url or os.environ.get("GENIR_BEIR_URL", BEIR_URL).format(name=name)
    target = cache_dir() / name
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{name}-") as tmp:
        archive = Path(tmp) / f"{name}.zip"
        try:
            with urllib.request.urlopen(url, timeout=60) as resp, open(archive, "wb") as out:
                total = int(resp.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {name}") as bar:
                    while chunk := resp.read(1 << 20):
                        out.write(chunk)
                        bar.update(len(chunk))
        except OSError as e:
            raise DataError(url, None, f"could not download dataset {name!r}: {e}. Offline? Point "
                                       f"$GENIR_DATASETS or --data-dir at a local mirror.") from None
        try:
            with zipfile.ZipFile(archive) as z:
                z.extractall(Path(tmp) / "x")
        except zipfile.BadZipFile:
            raise DataError(url, None, "downloaded file is not a zip archive") from None
        found = [p.parent for p in (Path(tmp) / "x").rglob("corpus.jsonl")]
        if not found:
            raise DataError(url, None, "archive holds no corpus.jsonl")
        load_beir(found[0], name)  # validate before it enters the cache
        if target.exists():
            shutil.rmtree(target)
        os.replace(found[0], target)
    return target


def load_dataset(name_or_path: str | Path, data_dir: str | Path | None = None,
                 qrels_dir: str = "qrels", download: bool = True) -> Collection:
    """Load a collection by name (``scifact``) or path; ``qrels_dir`` picks a graded variant."""
    from genir.data.esci import is_esci_folder, load_esci

    path = resolve_dataset(name_or_path, data_dir, download)
    if is_esci_folder(path) and not (path / "corpus.jsonl").is_file():
        return load_esci(path, name=Path(str(name_or_path)).name)
    return load_beir(path, Path(str(name_or_path)).name, qrels_dir=qrels_dir)
