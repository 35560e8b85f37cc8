"""Operating the gateway: graceful shutdown, slow clients, /metrics, structured logs, and
upstreams that misbehave at the byte level."""

import http.client
import http.server
import json
import signal
import socket
import sqlite3
import threading
import time
import urllib.parse
import uuid

import httpx2 as httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import start_gateway
from test_routing import MSG, open_raw_stream, post, sse_data


def tag() -> str:
    return uuid.uuid4().hex[:10]


def read_to_end(s: socket.socket, timeout: float = 30) -> bytes:
    s.settimeout(timeout)
    got = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return got
        got += chunk
        if got.endswith(b"0\r\n\r\n"):
            return got


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


# ---------------------------------------------------------------- shutdown


def test_sigterm_with_50_open_streams_finishes_them_and_exits_0(sim, tmp_path):
    g = start_gateway(sim.url, tmp_path, top="drain_timeout = 20")
    model = f"sim/fast;chunks=40;gap_ms=50;tag={tag()}"
    streams = [open_raw_stream(g, model, 1) for _ in range(50)]
    g.proc.p.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    port = int(g.url.rsplit(":", 1)[1])
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    bodies = [read_to_end(s) for s in streams]
    for b in bodies:
        assert b"data: [DONE]" in b, b[-300:]
        assert b'"error"' not in b
    assert g.proc.p.wait(15) == 0, g.proc.stderr()
    rows = sqlite3.connect(g.db).execute(
        "SELECT count(*), min(status), max(status) FROM usage WHERE model = ?", (model,)).fetchone()
    assert rows == (50, 200, 200), "every stream's usage row was flushed before exit"


def test_streams_past_the_drain_deadline_end_with_an_error_event(sim, tmp_path):
    g = start_gateway(sim.url, tmp_path, top="drain_timeout = 1")
    model = f"sim/fast;chunks=100000;gap_ms=50;tag={tag()}"
    streams = [open_raw_stream(g, model, 1) for _ in range(5)]
    t0 = time.monotonic()
    g.proc.p.send_signal(signal.SIGTERM)
    results = [read_to_end(s) for s in streams]
    assert g.proc.p.wait(15) == 0, g.proc.stderr()
    assert time.monotonic() - t0 < 6
    for b in results:
        # The last event (chunked framing aside) is the §4 error.
        last = [ln for ln in b.split(b"\n") if ln.startswith(b"data: ")][-1]
        err = json.loads(last[6:])["error"]
        assert err["code"] == "server_shutting_down", err
        assert b.endswith(b"0\r\n\r\n"), "the response is properly terminated"


def test_a_client_that_stops_reading_cannot_hold_up_shutdown(sim, tmp_path):
    g = start_gateway(sim.url, tmp_path, top="drain_timeout = 1")
    model = f"sim/fast;chunks=20000;chunk_bytes=10000;tag={tag()}"
    body = json.dumps({"model": model, "messages": MSG, "stream": True}).encode()
    port = int(g.url.rsplit(":", 1)[1])
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
              + f"authorization: Bearer {g.key}\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body)
    assert s.recv(1024).startswith(b"HTTP/1.1 200")
    time.sleep(0.5)  # the gateway's buffers fill; the client reads no more
    t0 = time.monotonic()
    g.proc.p.send_signal(signal.SIGTERM)
    assert g.proc.p.wait(15) == 0, g.proc.stderr()
    took = time.monotonic() - t0
    s.close()
    assert took < 6, f"drain 1 s + 2 s grace, then the connection is dropped: {took:.1f}s"
    rows = sqlite3.connect(g.db).execute("SELECT count(*) FROM usage WHERE model = ?", (model,)).fetchone()
    assert rows == (1,), "its usage row was still written"


# ---------------------------------------------------------------- slow clients


def test_a_slow_reader_gets_back_pressure_not_gateway_memory(sim, tmp_path):
    g = start_gateway(sim.url, tmp_path)
    try:
        # ~80 MB of stream the client will barely read.
        model = f"fast;chunks=8000;chunk_bytes=10000;tag={tag()}"
        for _ in range(3):
            post(g, {"model": "sim/fast", "messages": MSG})
        before = rss_kb(g.proc.p.pid)
        body = json.dumps({"model": f"sim/{model}", "messages": MSG, "stream": True}).encode()
        port = int(g.url.rsplit(":", 1)[1])
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        s.connect(("127.0.0.1", port))
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                  + f"authorization: Bearer {g.key}\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body)
        read = 0
        end = time.monotonic() + 4
        peak = before
        while time.monotonic() < end:
            read += len(s.recv(4096))
            peak = max(peak, rss_kb(g.proc.p.pid))
            time.sleep(0.01)
        sent = sim.stats()["frames_sent"].get(model, 0)
        s.close()
        assert read > 0
        assert sent < 4000, f"the upstream was held back: {sent} of 8000 frames sent"
        growth_mb = (peak - before) / 1024
        assert growth_mb < 30, f"gateway RSS grew {growth_mb:.1f} MB while the client read {read / 1e6:.1f} MB"
        print(f"slow reader: read {read / 1e6:.2f} MB, upstream sent {sent} frames, RSS +{growth_mb:.1f} MB")
    finally:
        g.proc.stop()


# ---------------------------------------------------------------- malformed upstreams


def test_a_stream_written_one_byte_at_a_time_arrives_intact(gw):
    def content(model):
        with httpx.stream("POST", gw.url + "/v1/chat/completions", timeout=30,
                          headers={"authorization": f"Bearer {gw.key}"},
                          json={"model": model, "messages": MSG, "stream": True}) as r:
            assert r.status_code == 200
            frames = sse_data(r.read())
        assert frames[-1] == "[DONE]"
        return "".join((json.loads(f)["choices"] or [{}])[0].get("delta", {}).get("content") or ""
                       for f in frames[:-1])

    whole = content("sim/text")
    assert whole
    assert content(f"sim/text;trickle;tag={tag()}") == whole


# ---------------------------------------------------------------- metrics and logs


def metric_value(families, name, **labels):
    for fam in families:
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def test_metrics_count_a_known_sequence_and_logs_are_json_lines(sim, tmp_path):
    g = start_gateway(sim.url, tmp_path, env={"JUSINFER_LOG_FORMAT": "json"})
    try:
        secret_prompt = "the secret prompt 4f1d"
        msgs = [{"role": "user", "content": secret_prompt}]
        for _ in range(3):
            assert post(g, {"model": "sim/fast", "messages": msgs}).status_code == 200
        with httpx.stream("POST", g.url + "/v1/chat/completions", timeout=30,
                          headers={"authorization": f"Bearer {g.key}"},
                          json={"model": "sim/fast", "messages": msgs, "stream": True}) as r:
            r.read()
        retried = f"sim/fast;seq=500,200;tag={tag()}"
        assert post(g, {"model": retried, "messages": msgs}).status_code == 200
        assert post(g, {"model": "no-such-model-x", "messages": msgs}).status_code == 404
        failing = f"sim/fast;status=503;tag={tag()}"
        assert post(g, {"model": failing, "messages": msgs}).status_code == 502
        # Every request a valid key made names it in its log line.
        h = {"authorization": f"Bearer {g.key}"}
        assert httpx.get(g.url + "/v1/models", headers=h).status_code == 200
        assert httpx.post(g.url + "/v1/responses", headers=h, json={"model": "sim/fast"}).status_code == 400
        assert httpx.post(g.url + "/v1/messages", headers={"x-api-key": g.key},
                          json={"model": "echo", "messages": []}).status_code == 400
        assert httpx.post(g.url + "/v1/messages/count_tokens", headers={"x-api-key": g.key},
                          json={"model": "echo", "messages": msgs}).status_code == 200
        assert httpx.get(g.url + "/v1/responses/resp_nope", headers=h).status_code == 404
        time.sleep(0.2)
        r = httpx.get(g.url + "/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
        fams = list(text_string_to_metric_families(r.text))
        ep = "/v1/chat/completions"
        assert metric_value(fams, "jusinfer_requests_total", endpoint=ep, model="sim/fast", provider="sim",
                            status="200") == 4
        assert metric_value(fams, "jusinfer_requests_total", model=retried, status="200") == 1
        assert metric_value(fams, "jusinfer_requests_total", model="-", provider="none", status="404") == 1
        assert metric_value(fams, "jusinfer_requests_total", model=failing, status="502") == 1
        assert metric_value(fams, "jusinfer_upstream_errors_total", provider="sim", kind="status") == 3
        assert metric_value(fams, "jusinfer_retries_total", provider="sim") == 2
        # fast: 5 completion tokens non-streamed, 20 streamed.
        assert metric_value(fams, "jusinfer_tokens_total", model="sim/fast", provider="sim",
                            kind="completion") == 3 * 5 + 20
        assert metric_value(fams, "jusinfer_request_duration_seconds_count", model="sim/fast") == 4
        assert metric_value(fams, "jusinfer_time_to_first_token_seconds_count", model="sim/fast") >= 1
        assert metric_value(fams, "jusinfer_in_flight_requests") == 0
        assert metric_value(fams, "jusinfer_circuit_state", provider="sim", model="fast") == 0
        assert metric_value(fams, "jusinfer_http_requests_total", route=ep, status="200") == 5
        assert metric_value(fams, "jusinfer_http_requests_total", route="/metrics", status="200") is None, \
            "counted after the response: this scrape is not in its own numbers"
    finally:
        g.proc.stop()
    lines = [json.loads(ln) for ln in g.proc.stderr().splitlines() if ln.startswith("{")]
    assert lines, "logs are JSON lines"
    reqs = [ln for ln in lines if ln.get("message") == "request" and ln.get("path") == ep]
    assert len(reqs) == 7
    ok = [ln for ln in reqs if ln["model"] == "sim/fast"]
    assert len(ok) == 4
    for ln in ok:
        assert ln["request_id"].startswith("req_") and ln["key_id"] and ln["provider"] == "sim"
        assert ln["status"] == 200 and ln["attempts"] == "1" and isinstance(ln["latency_ms"], int)
    assert any(ln["model"] == retried and ln["attempts"] == "2" for ln in reqs)
    keyed = [ln for ln in lines if ln.get("message") == "request" and ln.get("path") in
             ("/v1/models", "/v1/responses", "/v1/messages", "/v1/messages/count_tokens", "/v1/responses/resp_nope")]
    assert len(keyed) == 5 and all(ln.get("key_id") for ln in keyed), keyed
    assert secret_prompt not in g.proc.stderr(), "no prompt bodies unless the operator turns it on"
    assert g.key not in g.proc.stderr()


def test_body_logging_is_opt_in(sim, tmp_path):
    g = start_gateway(sim.url, tmp_path, top="log_bodies = true", env={"JUSINFER_LOG_FORMAT": "json"})
    try:
        post(g, {"model": "sim/fast", "messages": [{"role": "user", "content": "logged prompt 77ab"}]})
    finally:
        g.proc.stop()
    assert "logged prompt 77ab" in g.proc.stderr()


@pytest.mark.parametrize("stream", [False, True])
def test_invalid_utf8_from_the_upstream_is_a_502(gw, stream):
    # Found by fuzzing: serde skipped ignored strings without checking their UTF-8.
    r = post(gw, {"model": f"sim/fast;bad_utf8;tag={tag()}", "messages": MSG, "stream": stream})
    assert r.status_code == 502, r.content[:300]
    assert "UTF-8" in r.json()["error"]["message"] or "not valid JSON" in r.json()["error"]["message"]


# ---------------------------------------------------------------- egress


class _ForwardProxy(http.server.BaseHTTPRequestHandler):
    """A plain HTTP forward proxy (absolute-form requests), recording what it carried."""
    seen: list[str] = []

    def do_POST(self):
        type(self).seen.append(self.path)
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        u = urllib.parse.urlsplit(self.path)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        hop = ("connection", "proxy-connection", "keep-alive", "proxy-authorization")
        conn.request("POST", u.path + (f"?{u.query}" if u.query else ""), body,
                     {k: v for k, v in self.headers.items() if k.lower() not in hop})
        r = conn.getresponse()
        data = r.read()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_upstream_requests_go_direct_unless_the_environment_names_a_proxy(sim, tmp_path):
    """No proxy in the environment: hyper's client goes straight to the upstream, with the
    gateway's user-agent. `HTTP_PROXY` set: upstream requests go through that proxy, as
    they did when every request went through reqwest."""
    _ForwardProxy.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ForwardProxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy = f"http://127.0.0.1:{server.server_address[1]}"
    names = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
    clean = {n: "" for name in names for n in (name, name.lower())}
    body = {"model": "sim/text", "messages": [{"role": "user", "content": f"egress {tag()}"}]}
    try:
        direct = start_gateway(sim.url, tmp_path, env=clean, name="direct")
        try:
            r = post(direct, body)
            assert r.status_code == 200, r.text
            assert sim.last()["headers"]["user-agent"].startswith("jusinfer/")
            assert _ForwardProxy.seen == []
        finally:
            direct.proc.stop()
        proxied = start_gateway(sim.url, tmp_path, env=dict(clean, HTTP_PROXY=proxy), name="proxied")
        try:
            r = post(proxied, body)
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["message"]["content"]
        finally:
            proxied.proc.stop()
        assert f"{sim.url}/v1/chat/completions" in _ForwardProxy.seen, _ForwardProxy.seen
    finally:
        server.shutdown()
