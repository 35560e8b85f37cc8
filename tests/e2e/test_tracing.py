"""OpenTelemetry traces: a real OTLP/HTTP receiver decodes what the gateway exports with the
official protobuf definitions (`opentelemetry-proto`); the span tree, the GenAI attributes,
W3C trace context in and out, and collectors that are slow or gone."""

import http.server
import json
import secrets
import socket
import threading
import time

import httpx2 as httpx
import openai
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from conftest import free_port, start_gateway

SERVER = trace_pb2.Span.SpanKind.SPAN_KIND_SERVER
CLIENT = trace_pb2.Span.SpanKind.SPAN_KIND_CLIENT


class Collector(http.server.ThreadingHTTPServer):
    """OTLP over HTTP/protobuf: `POST /v1/traces`, decoded and kept; `delay` holds every
    export that long before answering."""
    daemon_threads = True

    def __init__(self, delay: float = 0.0):
        self.spans, self.resources, self.delay, self.exports = [], [], delay, 0
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                assert self.path == "/v1/traces", self.path
                assert self.headers.get("content-type") == "application/x-protobuf"
                req = trace_service_pb2.ExportTraceServiceRequest()
                req.ParseFromString(body)
                outer.exports += 1
                for rs in req.resource_spans:
                    outer.resources.append({a.key: value(a.value) for a in rs.resource.attributes})
                    for ss in rs.scope_spans:
                        outer.spans.extend(ss.spans)
                time.sleep(outer.delay)
                out = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        super().__init__(("127.0.0.1", 0), H)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def trace(self, trace_id: str, want: int, timeout: float = 15) -> list:
        end = time.monotonic() + timeout
        while True:
            got = [s for s in self.spans if s.trace_id.hex() == trace_id]
            if len(got) >= want or time.monotonic() > end:
                return got
            time.sleep(0.05)


def value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def attrs(span) -> dict:
    return {a.key: value(a.value) for a in span.attributes}


def traceparent() -> tuple[str, str, str]:
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, parent, f"00-{trace_id}-{parent}-01"


@pytest.fixture(scope="module")
def traced(sim, tmp_path_factory):
    """A gateway exporting to a collector named by the standard environment variables."""
    col = Collector()
    g = start_gateway(sim.url, tmp_path_factory.mktemp("traced"),
                      env={"OTEL_EXPORTER_OTLP_ENDPOINT": col.url, "OTEL_BSP_SCHEDULE_DELAY": "100"})
    yield g, col
    g.proc.stop()
    col.shutdown()


def test_one_server_span_per_request_and_a_client_child_per_attempt(traced, sim):
    g, col = traced
    trace_id, parent, header = traceparent()
    sim.clear()
    raw = g.client().chat.completions.with_raw_response.create(
        model="smart", messages=[{"role": "user", "content": "hi"}], max_tokens=50, temperature=0.5,
        extra_headers={"traceparent": header, "tracestate": "vendor=abc"})
    assert raw.http_response.status_code == 200
    spans = col.trace(trace_id, 3)
    assert len(spans) == 3, spans
    (req,) = [s for s in spans if s.kind == SERVER]
    attempts = sorted((s for s in spans if s.kind == CLIENT), key=lambda s: s.start_time_unix_nano)

    # The request span continues the client's trace.
    assert req.parent_span_id.hex() == parent
    assert req.name == "chat smart"
    a = attrs(req)
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.request.model"] == "smart"
    assert a["gen_ai.request.max_tokens"] == 50
    assert a["gen_ai.request.temperature"] == 0.5
    assert a["gen_ai.response.model"] == "text"
    usage = raw.parse().usage
    assert a["gen_ai.usage.input_tokens"] == usage.prompt_tokens > 0
    assert a["gen_ai.usage.output_tokens"] == usage.completion_tokens > 0
    assert a["http.response.status_code"] == 200
    assert a["jusinfer.request_id"] == raw.headers["x-request-id"]
    assert a["jusinfer.attempts"] == 2 and a["jusinfer.provider"] == "sim"
    assert a["jusinfer.key_id"].startswith("key_")
    assert "error.type" not in a and "gen_ai.input.messages" not in a

    # One child per attempt: the dead provider's connect failure, then the answer.
    assert [s.parent_span_id for s in attempts] == [req.span_id] * 2
    first, second = attrs(attempts[0]), attrs(attempts[1])
    assert first["jusinfer.provider"] == "down" and first["error.type"] == "connect"
    assert attempts[0].status.code == trace_pb2.Status.StatusCode.STATUS_CODE_ERROR
    assert second["jusinfer.provider"] == "sim" and "error.type" not in second
    assert second["gen_ai.provider.name"] == "openai-compatible"
    assert second["gen_ai.request.model"] == "text" and second["jusinfer.attempt"] == 2
    assert second["server.address"] == "127.0.0.1"
    assert attempts[1].name == "chat text"
    assert req.start_time_unix_nano <= attempts[0].start_time_unix_nano
    assert attempts[1].end_time_unix_nano <= req.end_time_unix_nano

    # The upstream saw the answering attempt's span as its parent, in the same trace.
    sent = {k.lower(): v for k, v in sim.last()["headers"].items()}
    assert sent["traceparent"] == f"00-{trace_id}-{attempts[1].span_id.hex()}-01"
    assert sent["tracestate"] == "vendor=abc"
    assert any(r.get("service.name") == "jusinfer" for r in col.resources)


def test_a_stream_ends_its_span_when_the_stream_ends_and_a_new_trace_starts_without_a_parent(traced):
    g, col = traced
    before = {s.trace_id for s in col.spans}
    chunks = list(g.client().chat.completions.create(
        model="sim/text", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "hi"}]))
    usage = chunks[-1].usage
    end = time.monotonic() + 15
    while not [s for s in col.spans if s.kind == SERVER and s.trace_id not in before]:
        assert time.monotonic() < end, "no span exported"
        time.sleep(0.05)
    (req,) = [s for s in col.spans if s.kind == SERVER and s.trace_id not in before]
    assert req.parent_span_id == b""
    a = attrs(req)
    assert a["jusinfer.stream"] is True and a["gen_ai.request.model"] == "sim/text"
    assert a["gen_ai.usage.output_tokens"] == usage.completion_tokens > 0


def test_a_cache_hit_says_so_and_has_no_attempt_span(traced):
    g, col = traced
    admin = httpx.Client(base_url=g.url, headers={"authorization": f"Bearer {g.key}"})
    key = admin.post("/admin/keys", json={"name": "cached", "cache": True}).json()["key"]
    c = g.client(api_key=key)
    prompt = [{"role": "user", "content": f"cache {secrets.token_hex(8)}"}]

    def call():
        trace_id, _, header = traceparent()
        raw = c.chat.completions.with_raw_response.create(
            model="sim/text", messages=prompt, extra_headers={"traceparent": header})
        return trace_id, raw.headers["x-jusinfer-cache"]

    miss_trace, first = call()
    assert first == "miss"
    end = time.monotonic() + 5
    while admin.get("/admin/cache").json()["entries"] == 0:  # written just after the answer
        assert time.monotonic() < end
        time.sleep(0.02)
    hit_trace, second = call()
    assert second == "hit"
    (req,) = col.trace(hit_trace, 1)
    a = attrs(req)
    assert req.kind == SERVER and a["jusinfer.cache"] == "hit" and a["jusinfer.attempts"] == 0
    assert a["jusinfer.cost_usd"] == 0 and a["gen_ai.usage.output_tokens"] > 0
    spans = col.trace(miss_trace, 2)
    assert [attrs(s)["jusinfer.cache"] for s in spans if s.kind == SERVER] == ["miss"]
    assert len([s for s in spans if s.kind == CLIENT]) == 1
    time.sleep(0.3)  # nothing more comes for the hit
    assert [s.kind for s in col.spans if s.trace_id.hex() == hit_trace] == [SERVER]


def test_errors_carry_error_type_and_refused_requests_are_traced_too(traced):
    g, col = traced
    trace_id, _, header = traceparent()
    with pytest.raises(openai.NotFoundError):
        g.client().chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}],
                                           extra_headers={"traceparent": header})
    trace_id2, _, header2 = traceparent()
    with pytest.raises(openai.AuthenticationError):
        g.client(api_key="jinf_wrong").chat.completions.create(
            model="sim/text", messages=[{"role": "user", "content": "x"}], extra_headers={"traceparent": header2})
    # A client's model name reaches the span bounded as the router bounds it.
    trace_id3, _, header3 = traceparent()
    with pytest.raises(openai.BadRequestError):
        g.client().chat.completions.create(model="m" * 100_000, messages=[{"role": "user", "content": "x"}],
                                           extra_headers={"traceparent": header3})
    (long,) = col.trace(trace_id3, 1)
    assert attrs(long)["gen_ai.request.model"] == "m" * 256 and len(long.name) < 300
    (nf,) = col.trace(trace_id, 1)
    assert attrs(nf)["http.response.status_code"] == 404 and attrs(nf)["error.type"]
    (unauth,) = col.trace(trace_id2, 1)
    assert attrs(unauth)["http.response.status_code"] == 401
    assert attrs(unauth)["error.type"]


def test_content_capture_is_opt_in_from_the_config_file(sim, tmp_path):
    col = Collector()
    g = start_gateway(sim.url, tmp_path, env={"OTEL_BSP_SCHEDULE_DELAY": "100"},
                      top=f'[tracing]\notlp_endpoint = "{col.url}"\ncapture_content = true\n')
    try:
        trace_id, _, header = traceparent()
        g.client().chat.completions.create(model="sim/text", extra_headers={"traceparent": header},
                                           messages=[{"role": "user", "content": "the secret recipe"}])
        (req,) = [s for s in col.trace(trace_id, 2) if s.kind == SERVER]
        # The messages as the client sent them, not the rest of the body.
        assert json.loads(attrs(req)["gen_ai.input.messages"]) == [
            {"role": "user", "content": "the secret recipe"}]
    finally:
        g.proc.stop()
        col.shutdown()


@pytest.mark.parametrize("collector", ["slow", "silent", "refusing"])
def test_a_slow_or_dead_collector_never_fails_or_holds_a_request(sim, tmp_path, collector):
    col = Collector(delay=30) if collector == "slow" else None
    hole = None
    if collector == "silent":
        # Accepts connections (the backlog) and never answers a byte.
        hole = socket.socket()
        hole.bind(("127.0.0.1", 0))
        hole.listen(64)
        url = f"http://127.0.0.1:{hole.getsockname()[1]}"
    else:
        url = col.url if col else f"http://127.0.0.1:{free_port()}"
    g = start_gateway(sim.url, tmp_path, env={"OTEL_EXPORTER_OTLP_ENDPOINT": url,
                                              "OTEL_EXPORTER_OTLP_TIMEOUT": "2000",
                                              "OTEL_BSP_SCHEDULE_DELAY": "50",
                                              "OTEL_BSP_MAX_QUEUE_SIZE": "64",
                                              "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "8"})
    try:
        # A client timeout far below the collector's hold: every request must still answer.
        c = g.client(timeout=5)
        for i in range(150):
            r = c.chat.completions.create(model="sim/text", stream=i % 2 == 0,
                                          messages=[{"role": "user", "content": "hi"}])
            if i % 2 == 0:
                assert list(r)
            else:
                assert r.choices[0].message.content
        if col:
            assert col.exports >= 1, "the exporter did try the collector"
    finally:
        g.proc.stop()
        assert g.proc.p.returncode == 0, g.proc.stderr()[-2000:]
        if col:
            col.shutdown()
        if hole:
            hole.close()


def test_off_by_default_nothing_is_sent_upstream(gw, sim):
    """The shared gateway names no collector: no span context is made or passed on."""
    _, _, header = traceparent()
    sim.clear()
    gw.client().chat.completions.create(model="sim/text", messages=[{"role": "user", "content": "hi"}],
                                        extra_headers={"traceparent": header})
    sent = {k.lower() for k in sim.last()["headers"]}
    assert "traceparent" not in sent and "tracestate" not in sent
