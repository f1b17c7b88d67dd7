"""Serve any Searcher over HTTP (stdlib only): ``GET /search?q=...&k=10`` and ``POST /search``.

POST body: ``{"queries": {"qid": "text", ...}, "k": 10}`` -> ``{"qid": [[doc_id, score], ...]}``.
``GET /health`` answers ``{"status": "ok", "searcher": name}``. One searcher call at a time (a lock):
the models are not re-entrant, and batching belongs inside ``batch_search``.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from genir.search.base import Searcher

MAX_K = 1000


def make_server(searcher: Searcher, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, obj) -> None:
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _search(self, queries: dict, k) -> None:
            try:
                k = int(k)
            except (TypeError, ValueError):
                return self._send(400, {"error": "k must be an integer"})
            if not 1 <= k <= MAX_K:
                return self._send(400, {"error": f"k must be between 1 and {MAX_K}"})
            if not queries or not all(isinstance(v, str) for v in queries.values()):
                return self._send(400, {"error": "give at least one query, as text"})
            with lock:
                results = searcher.batch_search(queries, k)
            self._send(200, {q: [[h.doc_id, h.score] for h in hits] for q, hits in results.items()})

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            url = urlparse(self.path)
            if url.path == "/health":
                return self._send(200, {"status": "ok", "searcher": searcher.name})
            if url.path != "/search":
                return self._send(404, {"error": "unknown path; use /search or /health"})
            params = parse_qs(url.query)
            if "q" not in params:
                return self._send(400, {"error": "missing query parameter q"})
            self._search({"q": params["q"][0]}, params.get("k", ["10"])[0])

        def do_POST(self) -> None:  # noqa: N802
            if urlparse(self.path).path != "/search":
                return self._send(404, {"error": "unknown path; use POST /search"})
            try:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
            except (ValueError, json.JSONDecodeError):
                return self._send(400, {"error": "body must be JSON: {\"queries\": {...}, \"k\": 10}"})
            if not isinstance(body, dict) or not isinstance(body.get("queries"), dict):
                return self._send(400, {"error": "body must hold \"queries\": {id: text}"})
            self._search(body["queries"], body.get("k", 10))

        def log_message(self, *args) -> None:
            pass

    return ThreadingHTTPServer((host, port), Handler)
