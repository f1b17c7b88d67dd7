"""``genir run``: baselines and methods on one collection, each a stage with its own folder, then a report.

Every stage writes its outputs atomically and records its fingerprint (``genir.stages``) before anything
else; a second run with the same ``--out`` reuses a stage only when its fingerprint matches, and otherwise
stops before any work, naming the settings that differ (``--redo NAME`` / ``--fresh`` recompute). A killed
run started again resumes (training itself from its last checkpoint). One method that fails is reported as
failed; the others' rows are written. The pipeline knows stages, not methods: each method's recipe
(``genir.methods``) supplies its docids, model, training data, searcher and report extras.
"""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from genir.distributed import barrier, gather_objects, is_main, shard_range, world
from genir.docids import DocIdTable, PrefixTree
from genir.evaluation.docids import docid_relevance
from genir.evaluation.hybrid import hybrid_rows
from genir.evaluation.metrics import evaluate
from genir.evaluation.report import write_report
from genir.evaluation.trec import write_run
from genir.io import write_json
from genir.methods import BASELINES, check_read, get_method, make_settings, method_settings, read_settings
from genir.methods.base import Method, Trained, TransferSource, epoch_searcher, model_config, train, train_config
from genir.methods.ranking import rank_aware
from genir.retriever import RECORD, Retriever, apply_search_overrides, docids_digest, make_record, write_record
from genir.search.base import Searcher, timed_search
from genir.settings import SearchSettings, Settings
from genir.stages import (
    STAGE_FILE,
    Stage,
    baseline_fingerprint,
    check_identities,
    check_stages,
    method_fingerprint,
    transfer_fingerprint,
)
from genir.training import checkpoint
from genir.training.loop import seed_everything
from genir.workspace import Workspace

__all__ = ["Pipeline", "make_settings", "run", "transfer"]


class Pipeline:
    def __init__(self, settings: Settings, redo: set[str] | None = None, fresh: bool = False):
        self.settings = settings.resolved()  # every training budget filled in: what each phase runs with
        self.ws = Workspace(self.settings)
        self.redo, self.fresh = set(redo or ()), fresh
        unknown = self.redo - set(settings.methods) - set(settings.baselines)
        if unknown:
            stages = ", ".join(settings.methods + settings.baselines) or "none"
            raise ValueError(f"--redo {sorted(unknown)[0]}: not a stage of this run (its stages: {stages})")
        self.stages: dict[str, Stage] = {}

    # -- stage records ------------------------------------------------------------------------------
    def _common(self) -> dict[str, Any]:
        from genir import __version__

        return {"genir": __version__, "dataset.sha256": self.ws.collection.content_hash}

    def _subsets_rule(self, fp):
        """With --new-docs, seen/unseen follow the training judgements that remain (those of new documents
        are not trained on): a result evaluated by the older rule is re-evaluated, not reused."""
        if self.settings.data.new_docs:
            fp.search = {**fp.search, "subsets.seen": "remaining training judgements"}
        return fp

    def baseline_stage(self, name: str) -> Stage:
        folder = self.ws.out / "baselines"
        search_owned = [folder / f"{name}.json", folder / f"{name}.trec"]
        return Stage(name, folder / f"{name}.{STAGE_FILE}", [*search_owned, folder / name], search_owned,
                     self._subsets_rule(baseline_fingerprint(self.settings, name, self._common())))

    def view(self, method: Method) -> Workspace:
        """The workspace ``method`` trains in: its own indexing texts where the run leaves them unset."""
        return self.ws.for_texts(method.indexing_texts)

    def method_stage(self, name: str, transfer_from: Path | None = None) -> Stage:
        folder = self.ws.out / name
        method = get_method(name)
        fp = method_fingerprint(self.view(method).settings, method.group, self._common())
        if method.revision > 1:  # the recipe changed what the same settings make: an older stage is not this one
            fp.train = {**fp.train, "recipe.revision": method.revision}
        if transfer_from is not None:  # the trained model comes from there: its record and files stand for it
            fp.train = {**fp.train, **transfer_fingerprint(Path(transfer_from), name,
                                                           method.transfer_reads(Path(transfer_from)))}
        return Stage(name, folder / STAGE_FILE, [folder], [folder / "result.json", folder / f"{name}.trec"],
                     self._subsets_rule(fp))

    # -- stages ------------------------------------------------------------------------------------
    def evaluate(self, searcher: Searcher, name: str, folder: Path, extra: dict) -> dict:
        """The test queries searched (split across processes when there are several, then gathered on
        every rank), the run file (rank 0 writes it) and the metrics."""
        ws = self.ws
        qids = list(ws.test_queries)
        mine = shard_range(len(qids))
        barrier()
        start = time.perf_counter()
        local = searcher.batch_search({q: ws.test_queries[q] for q in qids[mine.start: mine.stop]},
                                      self.settings.search.k) if len(mine) else {}
        parts = gather_objects(local)
        qps = len(qids) / max(time.perf_counter() - start, 1e-9)
        results = {q: hits for part in parts for q, hits in part.items()}
        results = ws.drop_identical_ids({q: results[q] for q in qids})
        write_run(results, folder / f"{name}.trec", tag=name)
        metrics = evaluate(results, ws.qrels, subsets=ws.subsets)
        return {"name": name, "metrics": metrics, "queries_per_second": qps, **extra}

    def baseline(self, name: str) -> dict:
        folder = self.ws.out / "baselines"
        done = folder / f"{name}.json"
        barrier()  # several processes: every rank sees what rank 0 wrote before deciding what to do
        if done.exists():
            return json.loads(done.read_text())
        if name not in BASELINES:
            raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")
        if is_main():
            folder.mkdir(parents=True, exist_ok=True)
        self.stages[name].start()
        start = time.perf_counter()
        baseline = BASELINES[name]
        searcher, label, extra = baseline.build(self.ws)
        index_s = extra.pop("index_seconds", time.perf_counter() - start)
        n = len(self.ws.docs)
        result = self.evaluate(searcher, name, folder, {
            "label": label, "kind": "baseline", "index_seconds": index_s,
            "indexing_docs_per_second": n / max(index_s, 1e-9),
            "index_bytes_per_doc": (searcher.index_bytes() or 0) / n,
            "fingerprint": self.stages[name].fingerprint.hash, **extra})
        baseline.save(searcher, folder / name, self.ws)  # the index opens itself: Retriever.load(folder / name)
        write_record(folder / name, make_record("baseline", name, self.settings, self._dataset()))
        write_json(done, result)
        return result

    def _dataset(self) -> dict[str, Any]:
        c = self.ws.collection
        return {"name": c.name, "sha256": c.content_hash, "path": str(Path(c.path).resolve()),
                "documents": len(c.corpus)}

    def method(self, name: str) -> dict:
        method = get_method(name)
        ws = self.view(method)
        settings, cfg = ws.settings, method_settings(ws.settings, method)
        folder = ws.out / name
        done = folder / "result.json"
        barrier()
        if done.exists():
            if not (folder / RECORD).exists() and is_main():  # made before records: its fingerprint matched
                write_record(folder, make_record("method", name, settings, self._dataset()))
            return json.loads(done.read_text())
        if is_main():
            folder.mkdir(parents=True, exist_ok=True)
        self.stages[name].start()
        seed_everything(settings.training.seed)  # a stage's figures do not depend on the stages before it
        start = time.perf_counter()
        docid_s = 0.0
        model_ready = (folder / "model" / "genir_model.json").exists()
        docids_ready = (folder / "docids" / "docids.json").exists()
        if method.learns_docids:  # docids come out of training (GenRet, GLEN)
            if model_ready and docids_ready:
                model = method.model_class.load(folder / "model").to(ws.device)
                table = DocIdTable.load(folder / "docids")
                info = json.loads((folder / "train.json").read_text())
            else:
                model, table, info = method.learn(ws, cfg, folder)
                info = {**info, **self._encoder_info(model, ws)}
                table.save(folder / "docids")
                model.save(folder / "model")
                write_json(folder / "train.json", info)
        else:
            table = DocIdTable.load(folder / "docids") if docids_ready else method.make_docids(ws, cfg, folder)
            if not docids_ready:
                table.save(folder / "docids")
            docid_s = time.perf_counter() - start
            if model_ready:
                model = method.model_class.load(folder / "model").to(ws.device)
                info = json.loads((folder / "train.json").read_text())
            else:
                model, info = self._train(method, cfg, table, folder, ws)
        checkpoint.discard(folder)  # the model and train.json are saved: nothing resumes from checkpoints now
        model.eval()
        barrier()  # several processes: the files rank 0 wrote beside the docids (GLEN's w^d, GenRet's d_T) are read
        write_record(folder, make_record("method", name, settings, self._dataset(), docids=docids_digest(table)))
        index_start = time.perf_counter()  # searched as the folder opens itself, with the parts in memory
        searcher = Retriever.load(folder, docs=ws.docs, model=model, table=table, show_progress=True).searcher
        searcher_s = time.perf_counter() - index_start  # e.g. encoding documents for tied docids
        index_s = docid_s + info["seconds"] + info.get("encode_seconds", 0.0) + searcher_s
        m = settings.model
        result = self.evaluate(searcher, name, folder, {
            **searched_as(name, settings.search), "kind": "generative", "method": name,
            "description": method.description, "encoder": m.encoder, "backbone": m.backbone,
            "indexing_texts": ws.texts_summary(),
            "docids": table.stats(), "docid_seconds": docid_s,
            "train_seconds": info["seconds"], "train_steps": info["steps"],
            "encode_seconds": info.get("encode_seconds", 0.0),
            "index_seconds": index_s, "indexing_docs_per_second": len(ws.docs) / max(index_s, 1e-9),
            "index_bytes_per_doc": searcher.index_bytes() / len(ws.docs), "parameters": info.get("parameters"),
            "fingerprint": self.stages[name].fingerprint.hash})
        result.update(self._extras(method, cfg, Trained(name, folder, model, table, info), searcher,
                                   result["queries_per_second"], ws))
        write_json(done, result)
        return result

    def transferred(self, source: Path, name: str) -> dict:
        """Zero-shot: the model trained in ``source/name`` indexes this run's corpus (no retraining) and
        answers its test queries (GLEN Sec. 4, the BEIR setting)."""
        method = get_method(name)
        ws = self.view(method)
        cfg = method_settings(ws.settings, method)
        folder = ws.out / name
        done = folder / "result.json"
        barrier()
        if done.exists():
            return json.loads(done.read_text())
        model_dir = Path(source) / name / "model"
        if not (model_dir / "genir_model.json").exists():
            raise ValueError(f"{model_dir}: no trained {name} model to transfer")
        if not method.can_transfer:
            raise ValueError(f"{name} cannot index a corpus it was not trained on without retraining")
        if is_main():
            folder.mkdir(parents=True, exist_ok=True)
        self.stages[name].start()
        model = method.model_class.load(model_dir).to(ws.device).eval()
        start = time.perf_counter()
        table = method.index_corpus(ws, cfg, model, folder, TransferSource(Path(source), read_settings(source)))
        trie = PrefixTree(table)
        if trie.depth > model.config.max_docid_length:
            raise ValueError(f"{name}: this corpus needs docids of {trie.depth} steps; the model decodes "
                             f"at most {model.config.max_docid_length}")
        table.save(folder / "docids")
        index_s = time.perf_counter() - start
        write_record(folder, make_record("method", name, ws.settings, self._dataset(), docids=docids_digest(table),
                                         model=str(model_dir.resolve()), transferred_from=str(Path(source).resolve())))
        barrier()  # as in ``method``: what rank 0 wrote beside the docids is read by every rank
        searcher = Retriever.load(folder, docs=ws.docs, model=model, table=table, show_progress=True).searcher
        result = self.evaluate(searcher, name, folder, {
            **searched_as(f"{name} (trained on {Path(source).name})", self.settings.search), "kind": "generative",
            "method": name, "description": method.description, "transferred_from": str(source),
            "docids": table.stats(), "train_seconds": 0.0, "train_steps": 0,
            "index_seconds": index_s, "indexing_docs_per_second": len(ws.docs) / max(index_s, 1e-9),
            "index_bytes_per_doc": searcher.index_bytes() / len(ws.docs), "parameters": model.n_parameters(),
            "fingerprint": self.stages[name].fingerprint.hash})
        trained = Trained(name, folder, model, table, {"transferred_from": str(source)})
        result.update(method.report(ws, cfg, trained, searcher))
        write_json(done, result)
        return result

    def _failed(self, name: str, error: Exception) -> dict:
        """A method that could not run: its error in the report and in ``errors/NAME.json`` (with the traceback
        when it is not an input problem); its stage writes no result, so the next run tries it again."""
        from genir.data.collection import DataError

        message = error_text(error) or type(error).__name__
        detail = "" if isinstance(error, (DataError, ValueError, KeyError)) else traceback.format_exc()
        write_json(self.ws.out / "errors" / f"{name}.json", {"name": name, "error": message, "traceback": detail})
        tqdm.write(f"{name} failed: {message}")
        return {"name": name, "error": message, "input_error": not detail}

    # -- parts of a method stage ---------------------------------------------------------------------
    def _encoder_info(self, model, ws: Workspace) -> dict:
        frozen = self.settings.model.encoder == "frozen"
        return {"encoder": self.settings.model.encoder, "encode_seconds": ws.encode_seconds if frozen else 0.0,
                "parameters": model.n_parameters()}

    def _train(self, method: Method, cfg: Any, table: DocIdTable, folder: Path, ws: Workspace):
        """The shared recipe for docids fixed before training: a DocidSeq2Seq over the table's codes,
        trained on the method's data and objective by the one training loop (in the method's view ``ws``)."""
        trie = PrefixTree(table)
        extra = {"method": method.name, **method.model_extra(cfg)}
        model = method.model_class(model_config(ws, method.n_codes(table), trie.depth, extra)).to(ws.device)
        model.freeze_encoder(self.settings.model.encoder == "frozen")
        data, objective = rank_aware(ws, method.rank_weight(cfg), method.training_data(ws, cfg, model, table, trie),
                                     method.objective, trie, model)
        info, history = train(ws, model, objective, data, folder / "checkpoints", f"train {method.name}",
                              searcher=epoch_searcher(method, ws, cfg, table, folder))
        phases = [*method.docid_phases(folder),
                  {"name": "retriever", "history": history, "evaluations": info["evaluations"]}]
        info = {**info, **self._encoder_info(model, ws), "examples": len(data[0]), "history": history, "phases": phases,
                "train_config": train_config(ws).__dict__}
        model.save(folder / "model")
        write_json(folder / "train.json", info)
        return model, info

    def _extras(self, method: Method, cfg: Any, trained: Trained, searcher: Searcher, qps: float,
                ws: Workspace) -> dict:
        """Report figures beyond the metrics: docid statistics for any multi-level scheme, the method's own
        extras, and the search speed at beam 10 (the same searcher at another beam)."""
        out = {}
        if trained.table.max_length > 1:
            train = self.settings.data.train_split if ws.has_train_split else None
            out["docid_relevance"] = docid_relevance(trained.table, ws.qrels,
                                                     ws.collection.qrels_for(train) if train else None)
        out.update(method.report(ws, cfg, trained, searcher))
        if hasattr(searcher, "with_beam"):
            beam = self.settings.search.beam
            _, out["queries_per_second_beam10"] = timed_search(searcher.with_beam(10), ws.test_queries,
                                                               self.settings.search.k)
            out[f"queries_per_second_beam{beam}"] = qps
        return out

    # -- the whole run -------------------------------------------------------------------------------
    def prepare(self, transfer_from: Path | None = None) -> None:
        """Every check before any work (the output folder, the input files, each method's inputs) and the
        stages with their fingerprints: what ``run`` and ``genir run --dry-run`` both start with."""
        ws = self.ws
        if ws.out.exists() and not ws.out.is_dir():
            raise ValueError(f"--out {ws.out}: a file is there, not a run folder")
        if self.settings.methods:
            ws.check_inputs()
        # training inputs a method cannot use stop the run before any work (a transfer trains nothing)
        for name in self.settings.methods if transfer_from is None else ():
            method = get_method(name)
            method.check(self.view(method), method_settings(self.settings, method))
        self.stages = {b: self.baseline_stage(b) for b in self.settings.baselines}
        self.stages.update({m: self.method_stage(m, transfer_from) for m in self.settings.methods})

    def run(self, transfer_from: Path | None = None) -> dict:
        """Baselines, then the methods: trained here, or (``transfer_from``, a run folder) the models
        trained there indexing this corpus without retraining."""
        start = time.perf_counter()
        ws = self.ws
        self.prepare(transfer_from)
        check_identities(ws.out, self.settings.methods, self.redo, self.fresh)
        check_stages(list(self.stages.values()), self.redo, self.fresh, ws.out)  # before any work
        barrier()  # rank 0 may have removed stages to redo
        if is_main():
            ws.out.mkdir(parents=True, exist_ok=True)
        origin = {"transferred_from": str(transfer_from)} if transfer_from else {}
        write_json(ws.out / "config.json", {**self.settings.to_dict(), **origin})
        results = [self.baseline(b) for b in tqdm(self.settings.baselines, desc="baselines", leave=False)]
        failed = []
        for name in self.settings.methods:
            try:
                results.append(self.transferred(transfer_from, name) if transfer_from else self.method(name))
                if is_main():
                    (ws.out / "errors" / f"{name}.json").unlink(missing_ok=True)
            except Exception as e:  # noqa: BLE001 - one method's failure must not lose the others' rows
                failed.append(self._failed(name, e))
        results += hybrid_rows(self.settings.search, {r["name"]: r for r in results},  # fused anew each time
                               lambda x, row: (ws.out / "baselines" if row.get("kind") == "baseline" else ws.out / x)
                               / f"{x}.trec", ws.test_queries, ws.qrels, ws.subsets)
        report = {
            "dataset": ws.collection.name, "test_split": ws.test_split,
            "dataset_path": str(ws.collection.path), "dataset_sha256": ws.collection.content_hash,
            "queries": {"full": len(ws.qrels), **{k: len(v) for k, v in ws.subsets.items()}},
            "documents": len(ws.docs), "config": self.settings.to_dict(),
            "data_notes": ws.data_notes({} if transfer_from else
                                        {m: self.view(get_method(m)) for m in self.settings.methods}),
            "systems": results, "failed": failed,
            **origin,
            "device": (torch.cuda.get_device_name() if ws.device.startswith("cuda")
                       else f"cpu ({torch.get_num_threads()} threads)"),
            "processes": world(),
            "wall_seconds_this_invocation": time.perf_counter() - start,
        }
        sections = {s["name"]: get_method(s["name"]).render(s) for s in results if s.get("kind") == "generative"}
        if is_main():
            write_report(report, ws.out, sections)
        barrier()
        return report


def error_text(e: BaseException) -> str:
    """An exception's message (a KeyError's without the quotes its str() adds)."""
    return str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)


def searched_as(label: str, search: SearchSettings) -> dict:
    """A generative row's label and beam settings (a narrowed beam said in the label)."""
    narrow = search.prefix_beam
    return {"label": label + (f" (prefix beam {narrow})" if narrow else ""), "beam": search.beam,
            "prefix_beam": narrow}


def run(settings: Settings, redo: set[str] | None = None, fresh: bool = False) -> dict:
    check_read(settings)  # a setting no stage reads is refused (a transfer keeps the source's settings as they are)
    return Pipeline(settings, redo, fresh).run()


def transfer(source: str | Path, settings: Settings, redo: set[str] | None = None, fresh: bool = False,
             overrides: dict[str, Any] | None = None) -> dict:
    """Zero-shot transfer: the methods trained in the run folder ``source`` index ``settings.data.dataset``'s
    corpus and search its test queries without retraining; the baselines run on it as usual. ``overrides``:
    search settings other than the source's (``group.key`` -> value); ``settings`` keep the source's training
    and docid settings (:func:`genir.methods.transfer_settings`): one changed on them is refused."""
    source = Path(source)
    apply_search_overrides(settings, overrides or {}, read_settings(source))  # a genir run folder, readable
    if settings.out and Path(settings.out).resolve() == source.resolve():
        raise ValueError(f"--out {settings.out} is the run transferred from: the transfer would overwrite its "
                         "config.json and stages; write the transfer to another folder")
    return Pipeline(settings, redo, fresh).run(transfer_from=source)
