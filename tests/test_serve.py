"""The HTTP server answers searches and rejects bad requests (loopback only, bounded)."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest

from genir.data.collection import Document
from genir.search.bm25 import BM25Searcher
from genir.serve import make_server


@pytest.fixture()
def server():
    docs = [Document("a", "protein folding in cells"), Document("b", "galaxies and dark matter"),
            Document("c", "cell division and mitosis")]
    srv = make_server(BM25Searcher(docs), "127.0.0.1", 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()


def _get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _post(url: str, body: bytes):
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_search_get_post_and_errors(server):
    assert _get(server + "/health") == (200, {"status": "ok", "searcher": "BM25"})
    code, body = _get(server + "/search?q=cell+mitosis&k=2")
    assert code == 200 and body["q"][0][0] == "c" and len(body["q"]) <= 2
    code, body = _post(server + "/search", json.dumps({"queries": {"x": "dark galaxies"}, "k": 1}).encode())
    assert code == 200 and body == {"x": [["b", pytest.approx(body["x"][0][1])]]}
    assert _get(server + "/search")[0] == 400
    assert _get(server + "/search?q=x&k=0")[0] == 400
    assert _get(server + "/search?q=x&k=ten")[0] == 400
    assert _post(server + "/search", b"{not json")[0] == 400
    assert _post(server + "/search", b'{"queries": ["a"]}')[0] == 400
    assert _get(server + "/nowhere")[0] == 404
