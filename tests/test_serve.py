"""The service over a real uvicorn server on loopback: every method side by side, bounded and answered
requests (4xx with a message, never a dropped connection), a searcher error is a 500 and the server stays
up, concurrent queries are batched into one beam search, and the live index through POST/DELETE."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from genir.live import LiveIndex
from tests.conftest import LIVE_METHODS, REFUSING


def start_server(index: LiveIndex, max_batch: int = 64):
    """A uvicorn server in a thread on a free loopback port: (base url, stop)."""
    import uvicorn

    from genir.serve import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(index, max_batch), host="127.0.0.1", port=port,
                                           log_level="warning", timeout_keep_alive=2))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)

    def stop():
        server.should_exit = True
        thread.join(10)

    return f"http://127.0.0.1:{port}", stop


def call(url: str, method: str = "GET", body: bytes | None = None):
    req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def raw(port: int, request: bytes, timeout: float = 10) -> bytes:
    """A hand-written HTTP request (a lying Content-Length, a truncated body): the raw answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except TimeoutError:
            pass
        return out


@pytest.fixture()
def service(live_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(live_run, run)
    index = LiveIndex(run)
    url, stop = start_server(index)
    yield url, index
    stop()


def test_search_side_by_side_documents_and_inspector(service):
    url, index = service
    coll = index.collection
    qid = next(iter(coll.qrels["test"]))
    q = coll.queries[qid]
    code, body = call(f"{url}/search?q={urllib.request.quote(q)}&k=5")
    assert code == 200 and body["judged"] is True
    assert list(body["results"]) == ["bm25", "dense", *LIVE_METHODS, *REFUSING]
    relevant = {d for d, g in coll.qrels["test"][qid].items() if g > 0}
    bm25 = body["results"]["bm25"]
    assert bm25 and all((h["relevance"] > 0) == (h["doc_id"] in relevant) for h in bm25)
    for name in LIVE_METHODS + REFUSING:
        hit = body["results"][name][0]
        path = hit["docid"]["path"]
        assert [p["code"] for p in path] == hit["docid"]["codes"] and all(p["documents"] >= 1 for p in path)
        assert path[-1]["documents"] <= path[0]["documents"]  # fewer documents share a longer prefix
    glen = body["results"]["glen"][0]["docid"]["path"]
    assert all(isinstance(p["word"], str) and p["word"] for p in glen)  # GLEN identifiers as words
    # one method; the batch endpoint gives the same ranking
    code, one = call(f"{url}/search?q={urllib.request.quote(q)}&k=5&method=genret")
    assert code == 200 and list(one["results"]) == ["genret"]
    code, batch = call(f"{url}/search", "POST", json.dumps({"queries": {"a": q}, "k": 5, "method": "genret"}).encode())
    assert code == 200 and [d for d, _ in batch["a"]] == [h["doc_id"] for h in one["results"]["genret"]]
    # a document: its text, and per method its docid and the documents sharing each prefix
    doc = body["results"]["genret"][0]["doc_id"]
    code, d = call(f"{url}/documents/{doc}")
    assert code == 200 and d["text"] == coll.corpus[doc].text
    sharing = d["docids"]["genret"]["sharing"]
    assert len(sharing) == len(d["docids"]["genret"]["codes"])
    assert all(len(s["examples"]) == min(5, s["documents"] - 1) for s in sharing)
    # the inspector: the beam step by step, each hit with the beam that found it
    code, ins = call(f"{url}/inspect?q={urllib.request.quote(q)}&method=dsi-semantic&k=5&top=4")
    assert code == 200 and len(ins["steps"]) >= 2
    assert all(len(s["top"]) <= 4 and all("documents" in b for b in s["top"]) for s in ins["steps"])
    final = ins["steps"][-1]["top"]
    for h in ins["hits"]:
        if h["beam"] < len(final):  # the final beam that found the hit holds its docid
            assert h["docid"] == final[h["beam"]]["prefix"]
    first = ins["hits"][0]
    assert first["docid"][:1] in [b["prefix"] for b in ins["steps"][0]["top"]]  # its branch at step 1
    assert call(f"{url}/inspect?q=x&method=bm25")[0] == 400
    code, ins = call(f"{url}/inspect?q={urllib.request.quote(q)}&method=glen&k=3")
    assert code == 200 and all(isinstance(w, str) for w in ins["steps"][0]["top"][0]["words"])


def test_bad_requests_get_an_answer_and_a_message(service):
    url, _ = service
    port = int(url.rsplit(":", 1)[1])
    for path, status in [("/search", 400), ("/search?q=x&k=0", 400), ("/search?q=x&k=1001", 400),
                         ("/search?q=x&k=ten", 400), ("/search?q=%20&k=3", 400), ("/search?q=x&method=nope", 404),
                         ("/documents/nope", 404), (f"/search?q={'x' * 3000}", 413), ("/nowhere", 404)]:
        code, body = call(url + path)
        assert code == status and body["error"], (path, code, body)
    for payload, status in [(b"{not json", 400), (b'{"queries": ["a"]}', 400), (b'{"queries": {}}', 400),
                            (json.dumps({"queries": {str(i): "q" for i in range(300)},
                                         "method": "bm25"}).encode(), 413),
                            (b'{"queries": {"a": "x"}}', 400)]:  # several methods served: say which
        code, body = call(url + "/search", "POST", payload)
        assert code == status and body["error"], (payload[:40], code, body)
    # a body declared far larger than allowed is refused before it is read, with an answer
    answer = raw(port, b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Content-Length: 100000000000\r\n\r\n{}")
    assert answer.startswith(b"HTTP/1.1 413") and b"larger than" in answer
    # a lying Content-Length (the body never comes) holds no worker: other requests are answered meanwhile
    hold = threading.Thread(target=raw, args=(port, b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n"
                                                    b"\r\n{\"queries\"", 3))
    hold.start()
    start = time.perf_counter()
    assert call(url + "/search?q=cells&k=2&method=bm25")[0] == 200
    assert time.perf_counter() - start < 2
    hold.join()
    # a declared 5 MB body is read and dropped, so the client gets its 413 (no reset)
    big = b"x" * (5 << 20)
    answer = raw(port, b"POST /documents HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Content-Length: " + str(len(big)).encode() + b"\r\n\r\n" + big, 30)
    assert answer.startswith(b"HTTP/1.1 413") and b"larger than" in answer
    # a chunked body over the limit: 413 too, not a 400 or a reset
    chunks = b"".join(b"%x\r\n" % len(part) + part + b"\r\n" for part in [b"y" * (1 << 20)] * 5) + b"0\r\n\r\n"
    answer = raw(port, b"POST /search HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks, 30)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:80]
    # a body that never arrives: answered 408 and closed within the stated time, not held open
    from genir.serve.limits import BODY_TIMEOUT

    start = time.perf_counter()
    answer = raw(port, b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{", BODY_TIMEOUT + 20)
    assert answer.startswith(b"HTTP/1.1 408") and time.perf_counter() - start < BODY_TIMEOUT + 10


def test_a_searcher_error_is_a_500_and_the_server_stays_up(service):
    url, index = service
    searcher = index.searcher("genret")

    def broken(queries, k=100):
        raise RuntimeError("model on fire")

    searcher.batch_search = broken
    code, body = call(url + "/search?q=cells&k=3&method=genret")
    assert code == 500 and "model on fire" in body["error"]
    del searcher.batch_search
    assert call(url + "/search?q=cells&k=3&method=genret")[0] == 200
    assert call(url + "/health")[0] == 200


def test_concurrent_queries_share_a_beam_search_and_get_their_own_answers(service):
    url, index = service
    queries = list(index.collection.queries.values())[:24]
    alone = {q: call(f"{url}/search?q={urllib.request.quote(q)}&k=5&method=dsi-semantic")[1]["results"]["dsi-semantic"]
             for q in queries}
    before = call(url + "/health")[1]["batches"]["dsi-semantic"]
    with ThreadPoolExecutor(24) as pool:
        together = list(pool.map(lambda q: call(f"{url}/search?q={urllib.request.quote(q)}&k=5&method=dsi-semantic"),
                                 queries * 2))
    assert all(code == 200 for code, _ in together)
    for q, (_, body) in zip(queries * 2, together, strict=True):
        got = body["results"]["dsi-semantic"]
        assert [h["doc_id"] for h in got] == [h["doc_id"] for h in alone[q]]
        assert [h["score"] for h in got] == pytest.approx([h["score"] for h in alone[q]], abs=1e-4)
    after = call(url + "/health")[1]["batches"]["dsi-semantic"]
    batched = {int(size): n - before.get(size, 0) for size, n in after.items()}
    assert max(size for size, n in batched.items() if n > 0) > 1, batched  # queries went in together


def test_live_index_over_http(service):
    url, index = service
    doc = {"_id": "http-1", "title": "Graphene", "text": "Graphene transistors switch at terahertz frequencies."}
    code, report = call(url + "/documents", "POST", json.dumps({"documents": [doc]}).encode())
    assert code == 200 and report["dsi-atomic"]["refused"] and report["genret"]["documents"] == 1
    code, body = call(url + "/search?q=graphene+terahertz+transistors&k=3")
    assert body["results"]["bm25"][0]["doc_id"] == "http-1"
    assert call(url + "/documents/http-1")[1]["docids"]["glen"]["codes"]
    assert call(url + "/documents", "POST", json.dumps({"documents": [doc]}).encode())[0] == 409  # already there
    assert call(url + "/documents", "POST", b'{"documents": [{"_id": "x"}]}')[0] == 400  # no text
    for bad in ("with space", "with\ttab"):  # the ids the CLI refuses
        code, refused = call(url + "/documents", "POST", json.dumps({"documents": [{**doc, "_id": bad}]}).encode())
        assert code == 400 and "whitespace" in refused["error"], (bad, code, refused)
    slashed = {**doc, "_id": "http/2", "text": "Perovskite solar cells."}  # an id with a slash is reachable
    assert call(url + "/documents", "POST", json.dumps({"documents": [slashed]}).encode())[0] == 200
    assert call(url + "/documents/http/2")[1]["doc_id"] == "http/2"
    assert call(url + "/documents/http/2", "DELETE")[0] == 200 and call(url + "/documents/http/2")[0] == 404
    victim = body["results"]["bm25"][0]["doc_id"]
    assert call(url + f"/documents/{victim}", "DELETE")[0] == 200
    assert call(url + f"/documents/{victim}", "DELETE")[0] == 409
    code, body = call(url + "/search?q=graphene+terahertz+transistors&k=100")
    assert all(victim not in [h["doc_id"] for h in hits] for hits in body["results"].values())
    assert call(url + f"/documents/{victim}")[0] == 404


def test_methods_reading_queries_with_one_encoder_encode_each_query_once(live_run, tmp_path):
    """A side by side search: the frozen-encoder methods share one pass of the encoder per query, and every
    method ranks as it does alone, without the service and without sharing."""
    run = tmp_path / "run"
    shutil.copytree(live_run, run)
    alone_index = LiveIndex(run)
    index = LiveIndex(run)
    for name in index.names:  # as `genir serve` does: every searcher open before the first request
        index.searcher(name)
    url, stop = start_server(index)
    try:
        queries = list(index.collection.queries.values())[:6]
        alone = {q: {n: alone_index.searcher(n).search(q, 5) for n in index.names} for q in queries}
        before = call(url + "/health")[1]["shared_encoders"]
        shared = {members: g for members, g in before.items() if "," in members}
        assert shared, before  # at least two methods read queries with one encoder
        for q in queries:
            code, body = call(f"{url}/search?q={urllib.request.quote(q)}&k=5")
            assert code == 200
            for name, hits in body["results"].items():
                assert [h["doc_id"] for h in hits] == [h.doc_id for h in alone[q][name]], (name, q)
                assert [h["score"] for h in hits] == pytest.approx([h.score for h in alone[q][name]], abs=1e-4)
        after = call(url + "/health")[1]["shared_encoders"]
        for members in shared:
            asked = after[members]["texts_asked"] - before[members]["texts_asked"]
            encoded = after[members]["texts_encoded"] - before[members]["texts_encoded"]
            assert asked == len(members.split(",")) * len(queries), (members, asked)
            assert encoded == len(queries), (members, encoded)  # once per query, not once per method
        from genir.serve import create_app

        with pytest.raises(ValueError, match="already shares"):  # refused, not accepted and ignored
            create_app(index, share_encoders=False)
    finally:
        stop()
