"""§5 routing and failure, end to end: retries, Retry-After, circuit breaking, strategies,
timeouts, cancellation, concurrency caps and header limits — the real binary in front of the
scripted simulator (`seq=`, `stall_after=`, `delay_ms=` … in the model string)."""

import json
import socket
import time
import uuid

import httpx2 as httpx
import openai
import pytest

from conftest import start_gateway

MSG = [{"role": "user", "content": "hi"}]


def tag() -> str:
    return uuid.uuid4().hex[:10]


def post(gw, body, key=None, timeout=30.0, **kw):
    return httpx.post(gw.url + "/v1/chat/completions", json=body, timeout=timeout,
                      headers={"authorization": f"Bearer {key or gw.key}"}, **kw)


def sim_count(sim, model: str) -> int:
    return sum(1 for r in sim.requests() if r["body"].get("model") == model)


# ---------------------------------------------------------------- retries


def test_500_then_200_is_retried_on_the_same_deployment(gw, sim):
    model = f"fast;seq=500,200;tag={tag()}"
    r = post(gw, {"model": f"sim/{model}", "messages": MSG})
    assert r.status_code == 200, r.text
    assert r.headers["x-jusinfer-attempts"] == "2"
    assert r.headers["x-jusinfer-provider"] == "sim"
    assert sim_count(sim, model) == 2


def test_429_retry_after_is_honoured(gw, sim):
    model = f"fast;seq=429,200;retry_after=1;tag={tag()}"
    t0 = time.monotonic()
    r = post(gw, {"model": f"sim/{model}", "messages": MSG})
    took = time.monotonic() - t0
    assert r.status_code == 200, r.text
    assert r.headers["x-jusinfer-attempts"] == "2"
    assert took >= 0.95, f"waited the upstream's Retry-After of 1 s, not {took:.2f}s"


def test_retry_after_ms_is_read_first(gw, sim):
    model = f"fast;seq=429,200;retry_after=9;retry_after_ms=300;tag={tag()}"
    t0 = time.monotonic()
    r = post(gw, {"model": f"sim/{model}", "messages": MSG})
    took = time.monotonic() - t0
    assert r.status_code == 200 and r.headers["x-jusinfer-attempts"] == "2"
    assert 0.28 <= took < 3, took


def test_retry_after_beyond_the_cap_goes_back_to_the_client(gw, sim):
    model = f"fast;seq=429;retry_after=60;tag={tag()}"
    r = post(gw, {"model": f"sim/{model}", "messages": MSG})
    assert r.status_code == 429
    assert r.headers["x-jusinfer-attempts"] == "1", "a 60 s wait is not worth holding the request"
    assert r.headers["retry-after"] == "60"
    assert r.json()["error"]["type"] == "rate_limit_exceeded"
    assert sim_count(sim, model) == 1


@pytest.mark.parametrize("status", [400, 404, 422])
def test_client_errors_are_not_retried(gw, sim, status):
    model = f"fast;seq={status},200;tag={tag()}"
    r = post(gw, {"model": f"sim/{model}", "messages": MSG})
    assert r.status_code == status
    assert r.headers["x-jusinfer-attempts"] == "1"
    assert sim_count(sim, model) == 1
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_upstream_401_is_not_retried_and_is_not_the_clients(gw, sim):
    model = f"fast;seq=401,200;tag={tag()}"
    r = post(gw, {"model": f"sim/{model}", "messages": MSG})
    assert r.status_code == 502 and r.headers["x-jusinfer-attempts"] == "1"
    assert sim_count(sim, model) == 1


def test_connection_refused_moves_to_the_next_deployment_at_once(gw):
    t0 = time.monotonic()
    r = post(gw, {"model": "smart", "messages": MSG})
    assert r.status_code == 200
    assert r.headers["x-jusinfer-provider"] == "sim"
    assert r.headers["x-jusinfer-attempts"] == "2", "a refused connection is not retried in place"
    assert time.monotonic() - t0 < 2


def test_exhausted_retries_report_every_attempt(gw, sim):
    model = f"fast;status=503;tag={tag()}"
    r = post(gw, {"model": f"sim/{model}", "messages": MSG})
    assert r.status_code == 502
    assert r.headers["x-jusinfer-attempts"] == "2", "one try plus the provider's one retry"
    assert sim_count(sim, model) == 2


# ---------------------------------------------------------------- circuit breaker

BREAKER_EXTRA = """
[providers.flaky]
kind = "openai-compatible"
base_url = "{sim}/v1"
retries = 0
timeouts = {{ idle = 0.3 }}

[[models]]
name = "guarded"
route = ["flaky/{model}", "sim/fast"]
"""


def test_circuit_opens_after_k_failures_and_a_probe_closes_it(sim, tmp_path):
    model = f"fast;seq=500,500,500,200;tag={tag()}"
    g = start_gateway(sim.url, tmp_path, breaker="failures = 3\nwindow = 60\ncooldown = 1",
                      extra=BREAKER_EXTRA.format(sim=sim.url, model=model))
    try:
        direct = {"model": f"flaky/{model}", "messages": MSG}
        for _ in range(3):
            assert post(g, direct).status_code == 502
        assert sim_count(sim, model) == 3
        r = post(g, direct)
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "circuit_open"
        assert 0 < float(r.headers["retry-after-ms"]) <= 1000
        assert sim_count(sim, model) == 3, "an open circuit sends nothing upstream"
        # An alias skips the open deployment and serves from the next one.
        r = post(g, {"model": "guarded", "messages": MSG})
        assert r.status_code == 200
        assert (r.headers["x-jusinfer-provider"], r.headers["x-jusinfer-attempts"]) == ("sim", "1")
        view = httpx.get(g.url + "/admin/providers", headers={"authorization": f"Bearer {g.key}"}).json()
        flaky = next(p for p in view["data"] if p["name"] == "flaky")
        dep = next(d for d in flaky["deployments"] if d["model"] == model)
        assert dep["circuit"] == "open" and dep["times_opened"] == 1 and dep["failures"] == 3
        assert next(r for r in view["routes"] if r["model"] == "guarded")["strategy"] == "fallback"
        time.sleep(1.1)
        r = post(g, direct)
        assert r.status_code == 200, "after the cool-down one probe goes through and succeeds"
        assert sim_count(sim, model) == 4
        view = httpx.get(g.url + "/admin/providers", headers={"authorization": f"Bearer {g.key}"}).json()
        dep = next(d for p in view["data"] for d in p["deployments"] if d["model"] == model)
        assert dep["circuit"] == "closed"
        metrics = httpx.get(g.url + "/metrics").text
        assert f'jusinfer_circuit_skips_total{{model="{model}",provider="flaky"}} 2' in metrics
    finally:
        g.proc.stop()


def test_stream_failures_after_the_start_count_against_the_deployment(sim, tmp_path):
    model = f"fast;stall_after=2;tag={tag()}"
    g = start_gateway(sim.url, tmp_path, breaker="failures = 2\nwindow = 60\ncooldown = 30",
                      extra=BREAKER_EXTRA.format(sim=sim.url, model="fast"))
    try:
        for _ in range(2):
            with httpx.stream("POST", g.url + "/v1/chat/completions", timeout=10,
                              headers={"authorization": f"Bearer {g.key}"},
                              json={"model": f"flaky/{model}", "messages": MSG, "stream": True}) as r:
                assert r.status_code == 200
                assert '"timeout"' in r.read().decode()
        r = post(g, {"model": f"flaky/{model}", "messages": MSG, "stream": True})
        assert r.status_code == 503 and r.json()["error"]["code"] == "circuit_open", r.text
    finally:
        g.proc.stop()


def test_a_provider_that_cannot_serve_the_endpoint_does_not_trip_its_circuit(sim, tmp_path):
    g = start_gateway(sim.url, tmp_path, breaker="failures = 2\nwindow = 60\ncooldown = 30")
    try:
        for _ in range(3):
            r = httpx.post(g.url + "/v1/embeddings", json={"model": "claude/text", "input": "x"},
                           headers={"authorization": f"Bearer {g.key}"})
            assert r.status_code == 502 and r.json()["error"]["code"] == "unsupported_provider"
            assert r.headers["x-jusinfer-attempts"] == "1", "not retried: it cannot work"
        assert post(g, {"model": "claude/text", "messages": MSG}).status_code == 200
    finally:
        g.proc.stop()


def test_admin_providers_needs_an_admin_key(gw):
    r = httpx.get(gw.url + "/admin/providers")
    assert r.status_code == 401
    view = httpx.get(gw.url + "/admin/providers", headers={"authorization": f"Bearer {gw.key}"}).json()
    assert {p["name"] for p in view["data"]} >= {"sim", "down", "claude", "echo"}
    assert "api_key" not in json.dumps(view) and "sk-sim" not in json.dumps(view)


# ---------------------------------------------------------------- strategies

STRATEGY_EXTRA = """
[providers.a]
kind = "openai-compatible"
base_url = "{sim}/v1"

[providers.b]
kind = "openai-compatible"
base_url = "{sim}/v1"

[prices."a/fast;cheap"]
input = 5.0
output = 15.0

[prices."b/fast;cheap"]
input = 0.1
output = 0.4

[[models]]
name = "split"
strategy = "weighted"
route = ["a/fast", "b/fast"]
weights = [3, 1]

[[models]]
name = "quick"
strategy = "least-latency"
route = ["a/fast;delay_ms=60", "b/fast"]

[[models]]
name = "quick-broken"
strategy = "least-latency"
route = ["a/fast;seq=404;tag=lb", "b/fast"]

[[models]]
name = "thrifty"
strategy = "lowest-cost"
route = ["a/fast;cheap", "b/fast;cheap"]
"""


@pytest.fixture(scope="module")
def sgw(sim, tmp_path_factory):
    g = start_gateway(sim.url, tmp_path_factory.mktemp("strategies"), extra=STRATEGY_EXTRA.format(sim=sim.url))
    yield g
    g.proc.stop()


def test_weighted_routing_follows_the_weights(sgw):
    counts = {"a": 0, "b": 0}
    with httpx.Client(timeout=10, headers={"authorization": f"Bearer {sgw.key}"}) as c:
        for _ in range(1000):
            r = c.post(sgw.url + "/v1/chat/completions", json={"model": "split", "messages": MSG})
            assert r.status_code == 200
            counts[r.headers["x-jusinfer-provider"]] += 1
    share = counts["a"] / 1000
    assert 0.675 <= share <= 0.825, f"weights 3:1 → 75% ± 10%, got {counts}"


def test_least_latency_prefers_the_faster_deployment_after_warm_up(sgw):
    seen = []
    with httpx.Client(timeout=10, headers={"authorization": f"Bearer {sgw.key}"}) as c:
        for _ in range(20):
            r = c.post(sgw.url + "/v1/chat/completions", json={"model": "quick", "messages": MSG})
            assert r.status_code == 200
            seen.append(r.headers["x-jusinfer-provider"])
    assert seen[:2] == ["a", "b"], f"each deployment is measured once first: {seen}"
    assert seen[2:] == ["b"] * 18, seen


def test_least_latency_does_not_keep_trying_a_deployment_that_never_succeeds(sgw):
    statuses = [post(sgw, {"model": "quick-broken", "messages": MSG}) for _ in range(4)]
    assert statuses[0].status_code == 404, "a client error goes back unretried"
    assert [r.status_code for r in statuses[1:]] == [200] * 3
    assert {r.headers["x-jusinfer-provider"] for r in statuses[1:]} == {"b"}


def test_lowest_cost_prefers_the_cheaper_deployment(sgw):
    for _ in range(3):
        r = post(sgw, {"model": "thrifty", "messages": MSG})
        assert r.headers["x-jusinfer-provider"] == "b"


# ---------------------------------------------------------------- timeouts and cancellation


def sse_data(raw: bytes) -> list:
    out = []
    for block in raw.decode().split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: "):
                out.append(line[6:])
    return out


def test_stalled_stream_ends_with_an_error_event_at_the_idle_timeout(gw):
    t0 = time.monotonic()
    with httpx.stream("POST", gw.url + "/v1/chat/completions", timeout=20,
                      headers={"authorization": f"Bearer {gw.key}"},
                      json={"model": f"sim/fast;stall_after=3;tag={tag()}", "messages": MSG, "stream": True}) as r:
        assert r.status_code == 200
        raw = r.read()
    took = time.monotonic() - t0
    frames = sse_data(raw)
    assert len(frames) == 4, frames
    assert all("chat.completion.chunk" in f for f in frames[:3])
    err = json.loads(frames[3])["error"]
    assert err["type"] == "timeout" and "idle" in err["message"], err
    assert 1.4 <= took < 5, f"the test gateway's idle timeout is 1.5 s: took {took:.2f}"


def open_raw_stream(gw, model: str, frames_wanted: int) -> socket.socket:
    body = json.dumps({"model": model, "messages": MSG, "stream": True}).encode()
    port = int(gw.url.rsplit(":", 1)[1])
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
              + f"authorization: Bearer {gw.key}\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body)
    got = b""
    while got.count(b"data: ") < frames_wanted:
        chunk = s.recv(65536)
        assert chunk, got
        got += chunk
    assert got.startswith(b"HTTP/1.1 200"), got[:200]
    return s


def wait_cancelled(sim, model: str, deadline: float = 3.0) -> float:
    end = time.time() + deadline
    while time.time() < end:
        for c in sim.stats()["cancellations"]:
            if c["model"] == model:
                return c["at_ms"]
        time.sleep(0.01)
    raise AssertionError(f"the simulator never saw {model} cancelled")


@pytest.mark.parametrize("shape", ["flowing", "stalled"])
def test_client_disconnect_mid_stream_cancels_upstream_within_100ms(gw, sim, shape):
    model = f"fast;chunks=100000;gap_ms=20;tag={tag()}" if shape == "flowing" else f"fast;stall_after=4;tag={tag()}"
    s = open_raw_stream(gw, f"sim/{model}", 3)
    time.sleep(0.2)
    closed_at = time.time() * 1000
    s.close()
    lag = wait_cancelled(sim, model) - closed_at
    print(f"cancel lag {lag:.1f} ms")
    assert lag < 100, f"upstream connection closed {lag:.1f} ms after the client left"


def test_client_disconnect_mid_request_cancels_upstream_within_100ms(gw, sim):
    model = f"fast;delay_ms=5000;tag={tag()}"
    body = json.dumps({"model": f"sim/{model}", "messages": MSG}).encode()
    port = int(gw.url.rsplit(":", 1)[1])
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
              + f"authorization: Bearer {gw.key}\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body)
    deadline = time.time() + 5
    while sim_count(sim, model) == 0 and time.time() < deadline:
        time.sleep(0.01)
    assert sim_count(sim, model) == 1, "the request reached the upstream"
    closed_at = time.time() * 1000
    s.close()
    lag = wait_cancelled(sim, model) - closed_at
    print(f"cancel lag {lag:.1f} ms")
    assert lag < 100, f"upstream request cancelled {lag:.1f} ms after the client left"


# ---------------------------------------------------------------- hardening


def test_oversized_and_too_many_headers_are_refused(gw):
    r = httpx.get(gw.url + "/healthz", headers={"x-big": "a" * 100_000})
    assert r.status_code == 431
    many = {f"x-h{i}": "1" for i in range(150)}
    r = httpx.get(gw.url + "/healthz", headers=many)
    assert r.status_code == 431
    assert httpx.get(gw.url + "/healthz").status_code == 200, "the server is still fine"


def test_concurrency_caps_answer_503_past_them(sim, tmp_path):
    g = start_gateway(sim.url, tmp_path,
                      top="max_concurrent_requests = 3\nmax_concurrent_per_key = 2\nbody_read_timeout = 0.5")
    try:
        other = httpx.post(g.url + "/admin/keys", json={"name": "other"},
                           headers={"authorization": f"Bearer {g.key}"}).json()["key"]
        stall = f"sim/fast;stall_after=2;tag={tag()}"
        held = [open_raw_stream(g, stall, 2) for _ in range(2)]
        r = post(g, {"model": "sim/fast", "messages": MSG})
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "concurrency_limit_exceeded"
        assert "retry-after" in r.headers
        r = post(g, {"model": "sim/fast", "messages": MSG}, key=other)
        assert r.status_code == 200, "another key has its own places"
        with httpx.stream("POST", g.url + "/v1/chat/completions", timeout=20,
                          headers={"authorization": f"Bearer {other}"},
                          json={"model": stall, "messages": MSG, "stream": True}) as third:
            assert third.status_code == 200
            r = post(g, {"model": "sim/fast", "messages": MSG}, key=other)
            assert r.status_code == 503 and r.json()["error"]["code"] == "overloaded"
            assert httpx.get(g.url + "/healthz").status_code == 200, "health is never capped"
            assert httpx.get(g.url + "/metrics").status_code == 200
        for s in held:
            s.close()
        deadline = time.time() + 5
        while time.time() < deadline:
            r = post(g, {"model": "sim/fast", "messages": MSG})
            if r.status_code == 200:
                break
            time.sleep(0.05)
        assert r.status_code == 200, "places come back when streams end"
        # A body that never finishes arriving is cut off, and its place given back.
        port = int(g.url.rsplit(":", 1)[1])
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                  + f"authorization: Bearer {g.key}\r\ncontent-length: 100\r\n\r\n".encode() + b'{"model":')
        head = s.recv(4096)
        s.close()
        assert head.startswith(b"HTTP/1.1 408"), head[:100]
        metrics = httpx.get(g.url + "/metrics").text
        assert 'jusinfer_overload_rejections_total{scope="key"} 1' in metrics
        assert 'jusinfer_overload_rejections_total{scope="global"} 1' in metrics
    finally:
        g.proc.stop()


def test_overlong_model_names_are_refused(gw):
    r = post(gw, {"model": "sim/" + "x" * 300, "messages": MSG})
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"


def test_per_model_timeouts_override_the_providers(sim, tmp_path):
    g = start_gateway(sim.url, tmp_path, extra="""
[[models]]
name = "impatient"
route = ["sim/fast;delay_ms=1200"]
timeouts = { first_byte = 0.3 }
""")
    try:
        t0 = time.monotonic()
        r = post(g, {"model": "impatient", "messages": MSG})
        assert r.status_code == 504, r.text
        assert r.headers["x-jusinfer-attempts"] == "2"
        assert time.monotonic() - t0 < 1.5, "0.3 s per attempt, not the provider's 1.5 s"
        r = post(g, {"model": "sim/fast;delay_ms=1200", "messages": MSG})
        assert r.status_code == 200, "the provider's own timeout still applies elsewhere"
    finally:
        g.proc.stop()


def test_a_200_stream_holding_only_an_error_event_is_a_failed_attempt(gw, sim):
    model = f"fast;error_event;tag={tag()}"
    r = post(gw, {"model": f"sim/{model}", "messages": MSG, "stream": True})
    assert r.status_code == 502, r.text
    assert r.headers["x-jusinfer-attempts"] == "2", "retried like any failed attempt"
    assert sim_count(sim, model) == 2
