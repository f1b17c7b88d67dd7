"""The search service: every method of a run folder and its baselines over HTTP (FastAPI + uvicorn), a web
page that shows their rankings side by side with the docids as their schemes mean them, a docid inspector,
and the live index (``POST /documents``, ``DELETE /documents/{id}``). OpenAPI docs at ``/docs``.

Concurrent searches are batched: each searcher has a worker thread that takes every query waiting (up to
``max_batch``) into one ``batch_search`` call, so that 50 clients share beam searches instead of queueing
for one lock. Searches share a read lock; a change to the index takes it for writing, so a search sees the
index before or after a change, never during one.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections import Counter
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from genir.data.collection import DataError, Document, check_id
from genir.live import LiveIndex, LiveIndexError
from genir.search.shared_encoding import SharedEncoders, take_waiting
from genir.serve.limits import BodyLimit

STATIC = Path(__file__).parent / "static"
MAX_K = 1000
MAX_QUERY_CHARS = 2000
MAX_BATCH_QUERIES = 256  # one POST /search
MAX_BODY_BYTES = 4 << 20  # any request body
MAX_NEW_DOCUMENTS = 1000  # one POST /documents


class ReadWriteLock:
    """Many readers (searches) or one writer (a change to the index)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers, self._writer = 0, False

    def read(self):
        return _Held(self, False)

    def write(self):
        return _Held(self, True)

    def acquire(self, write: bool) -> None:
        with self._cond:
            if write:
                while self._writer or self._readers:
                    self._cond.wait()
                self._writer = True
            else:
                while self._writer:
                    self._cond.wait()
                self._readers += 1

    def release(self, write: bool) -> None:
        with self._cond:
            if write:
                self._writer = False
            else:
                self._readers -= 1
            self._cond.notify_all()


class _Held:
    def __init__(self, lock: ReadWriteLock, write: bool):
        self.lock, self.write = lock, write

    def __enter__(self):
        self.lock.acquire(self.write)

    def __exit__(self, *exc):
        self.lock.release(self.write)


class MicroBatcher:
    """One worker thread per searcher: the queries waiting when it is free go into one batch_search."""

    def __init__(self, index: LiveIndex, name: str, lock: ReadWriteLock, max_batch: int = 64,
                 wait_s: float = 0.002):
        self.index, self.name, self.lock = index, name, lock
        self.max_batch, self.wait_s = max_batch, wait_s
        self.queue: queue.Queue = queue.Queue()
        self.batches = Counter()  # batch size -> count (the service's /health shows them)
        threading.Thread(target=self._work, name=f"search-{name}", daemon=True).start()

    def submit(self, query: str, k: int) -> Future:
        future: Future = Future()
        self.queue.put((query, k, future))
        return future

    def _work(self) -> None:
        while True:
            items = take_waiting(self.queue, self.wait_s, lambda waiting: len(waiting) >= self.max_batch)
            self.batches[len(items)] += 1
            try:
                with self.lock.read():
                    searcher = self.index.searcher(self.name)
                    results = searcher.batch_search({str(i): q for i, (q, _, _) in enumerate(items)},
                                                    max(k for _, k, _ in items))
                for i, (_, k, future) in enumerate(items):
                    future.set_result(results[str(i)][:k])
            except Exception as e:  # every waiting request gets the error (a 500), the worker goes on
                for _, _, future in items:
                    if not future.done():
                        future.set_exception(e)


class SearchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    queries: dict[str, str] = Field(description="query id -> text")
    k: int = 10
    method: str | None = Field(None, description="a served method or baseline (default: the only one served)")


class NewDocument(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    id: str = Field(alias="_id", min_length=1, max_length=200)
    text: str
    title: str = ""


class AddBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    documents: list[NewDocument]


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        self.status, self.message = status, message


class Service:
    """What the endpoints share: the live index, a batcher per searcher, the test split's judgements."""

    def __init__(self, index: LiveIndex, max_batch: int = 64, share_encoders: bool = True):
        self.index, self.lock = index, ReadWriteLock()
        if not share_encoders and index.shared_encoders is not None:
            raise ValueError("share_encoders=False: this index already shares its query encoders")
        self.encoders = (index.shared_encoders or SharedEncoders()) if share_encoders else None
        if self.encoders is not None:  # a side by side search encodes a query once per encoder, not per method
            index.share_query_encoders(self.encoders)
        self.batchers = {name: MicroBatcher(index, name, self.lock, max_batch) for name in index.names}
        coll = index.collection
        split = index.settings.data.test_split
        qrels = coll.qrels.get(split, {})
        self.judged = {" ".join(coll.queries[q].split()).lower(): rels for q, rels in qrels.items()
                       if q in coll.queries}
        self._docid_cache: dict[str, tuple[int, Any]] = {}

    def check_method(self, method: str | None) -> str:
        if method is None:
            if len(self.index.names) == 1:
                return self.index.names[0]
            raise ApiError(400, f"give method= one of: {', '.join(self.index.names)}")
        if method not in self.batchers:
            raise ApiError(404, f"unknown method {method!r}; served: {', '.join(self.index.names)}")
        return method

    async def search(self, method: str, query: str, k: int):
        return await asyncio.wrap_future(self.batchers[method].submit(query, k))

    # -- docids, the way each scheme means them --------------------------------------------------------
    def docids(self, method: str) -> tuple[Any, dict, Counter]:
        """(table, doc id -> row, prefix -> documents sharing it) of a method, per index version."""
        cached = self._docid_cache.get(method)
        if cached is None or cached[0] != self.index.state.version:
            table, _ = self.index.table(method)
            rows = {d: i for i, d in enumerate(table.doc_ids)}
            shared = Counter(s[:t] for s in table.sequences() for t in range(1, len(s) + 1))
            cached = (self.index.state.version, (table, rows, shared))
            self._docid_cache[method] = cached
        return cached[1]

    def docid(self, method: str, doc_id: str, examples: int = 0) -> dict | None:
        if method not in self.index.methods:
            return None
        table, rows, shared = self.docids(method)
        if doc_id not in rows:
            return None
        codes = list(table.sequence(rows[doc_id]))
        m = self.index.method(method)
        words = m.docid_words(self.index.model(method), codes)
        path = [{"code": c, "word": words[t] if words else None, "documents": shared[tuple(codes[: t + 1])]}
                for t, c in enumerate(codes)]
        out = {"scheme": table.scheme, "codes": codes, "path": path}
        if examples:
            out["sharing"] = []
            for t in range(len(codes)):
                prefix = tuple(codes[: t + 1])
                others = [d for d, i in rows.items() if d != doc_id and table.sequence(i)[: t + 1] == prefix]
                out["sharing"].append({"prefix": list(prefix), "documents": shared[prefix],
                                       "examples": [self.hit_doc(d) for d in others[:examples]]})
        return out

    def hit_doc(self, doc_id: str) -> dict:
        doc = self.index.document(doc_id)
        return {"doc_id": doc_id, "title": (doc.title or doc.text[:80]) if doc else ""}

    def hits(self, method: str, hits: list, judged: dict | None) -> list[dict]:
        out = []
        for h in hits:
            item = {**self.hit_doc(h.doc_id), "score": h.score, "docid": self.docid(method, h.doc_id)}
            if judged is not None:
                item["relevance"] = judged.get(h.doc_id, 0)
            out.append(item)
        return out


def _check_query(q: str, k: int) -> None:
    if not q.strip():
        raise ApiError(400, "the query is empty")
    if len(q) > MAX_QUERY_CHARS:
        raise ApiError(413, f"the query is longer than {MAX_QUERY_CHARS} characters")
    if not 1 <= k <= MAX_K:
        raise ApiError(400, f"k must be between 1 and {MAX_K}, got {k}")


def create_app(index: LiveIndex, max_batch: int = 64, share_encoders: bool = True) -> FastAPI:
    """The FastAPI application over a live index (``uvicorn.run(create_app(index))``). ``share_encoders``:
    methods that read queries with the same encoder encode each query once (off: once per method)."""
    service = Service(index, max_batch, share_encoders)
    app = FastAPI(title="genir", description="Generative retrieval beside BM25 and dense: search, inspect "
                  "docids, add and remove documents.", version="0.1.0")
    app.state.service = service

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError):
        return JSONResponse({"error": e.message}, status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, e: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(x) for x in err['loc'] if x != 'body')}: {err['msg']}"
                             for err in e.errors()[:5])
        return JSONResponse({"error": f"bad request: {problems}"}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        message = "unknown path; see /docs" if e.status_code == 404 else str(e.detail)
        return JSONResponse({"error": message}, status_code=e.status_code)

    @app.exception_handler(LiveIndexError)
    async def live_error(request: Request, e: LiveIndexError):
        return JSONResponse({"error": str(e)}, status_code=409)

    @app.exception_handler(Exception)
    async def server_error(request: Request, e: Exception):  # the server stays up; the client learns why
        return JSONResponse({"error": f"{type(e).__name__}: {e}"}, status_code=500)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "methods": index.names, "documents": len(index.corpus()),
                "version": index.state.version,
                "batches": {n: dict(sorted(b.batches.items())) for n, b in service.batchers.items()},
                "shared_encoders": service.encoders.health() if service.encoders is not None else None}

    @app.get("/search")
    async def search(q: str = Query(..., description="query text"), k: int = 10,
                     method: str | None = Query(None, description="one method (default: all side by side)")):
        _check_query(q, k)
        names = [service.check_method(method)] if method else index.names
        judged = service.judged.get(" ".join(q.split()).lower())
        found = await asyncio.gather(*(service.search(n, q, k) for n in names))
        return {"query": q, "k": k, "judged": judged is not None,
                "results": {n: service.hits(n, hits, judged) for n, hits in zip(names, found, strict=True)}}

    @app.post("/search")
    async def search_batch(body: SearchBody):
        if not body.queries:
            raise ApiError(400, "give at least one query")
        if len(body.queries) > MAX_BATCH_QUERIES:
            raise ApiError(413, f"at most {MAX_BATCH_QUERIES} queries per request, got {len(body.queries)}")
        for text in body.queries.values():
            _check_query(text, body.k)
        name = service.check_method(body.method)
        qids = list(body.queries)
        found = await asyncio.gather(*(service.search(name, body.queries[q], body.k) for q in qids))
        return {q: [[h.doc_id, h.score] for h in hits] for q, hits in zip(qids, found, strict=True)}

    @app.get("/documents/{doc_id:path}")
    def document(doc_id: str, examples: int = Query(5, ge=0, le=50)):
        doc = index.document(doc_id)
        if doc is None:
            raise ApiError(404, f"no document {doc_id!r} in the index")
        return {"doc_id": doc.id, "title": doc.title, "text": doc.text,
                "docids": {m: service.docid(m, doc_id, examples) for m in index.methods}}

    @app.post("/documents")
    def add_documents(body: AddBody):
        if not body.documents:
            raise ApiError(400, "give at least one document")
        if len(body.documents) > MAX_NEW_DOCUMENTS:
            raise ApiError(413, f"at most {MAX_NEW_DOCUMENTS} documents per request")
        docs = [Document(d.id, d.text, d.title) for d in body.documents]
        for d in docs:
            try:  # the ids the CLI accepts, no more: whitespace would split a run file's columns
                check_id("POST /documents", None, "document", d.id)
            except DataError as e:
                raise ApiError(400, e.problem) from None
            if not d.full_text.strip():
                raise ApiError(400, f"document {d.id!r} has an empty text")
        with service.lock.write():
            return index.add(docs)

    @app.delete("/documents/{doc_id:path}")
    def remove_document(doc_id: str):
        with service.lock.write():
            return index.remove([doc_id])

    @app.get("/inspect")
    def inspect(q: str, method: str, k: int = 10, top: int = Query(10, ge=1, le=100)):
        _check_query(q, k)
        name = service.check_method(method)
        if name not in index.methods:
            raise ApiError(400, f"{name} is a baseline: it has no docids to inspect")
        with service.lock.read():
            searcher = index.searcher(name).inner
            if not hasattr(searcher, "inspect"):
                raise ApiError(400, f"{name}: its searcher has no beam to inspect")
            out = searcher.inspect(q, k, top)
        m = index.method(name)
        model = index.model(name)
        _, _, shared = service.docids(name)
        for step in out["steps"]:
            for b in step["top"]:
                b["documents"] = shared[tuple(b["prefix"])]
                words = m.docid_words(model, b["prefix"])
                if words is not None:
                    b["words"] = words
        for h in out["hits"]:
            h.update(service.hit_doc(h["doc_id"]))
        return out

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    return app


def serve(index: LiveIndex, host: str = "127.0.0.1", port: int = 8000, max_batch: int = 64,
          log_level: str = "warning", share_encoders: bool = True) -> None:
    import uvicorn

    uvicorn.run(create_app(index, max_batch, share_encoders), host=host, port=port, log_level=log_level, backlog=2048,
                timeout_keep_alive=5)
