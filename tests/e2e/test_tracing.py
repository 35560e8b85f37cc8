"""OpenTelemetry traces: a real OTLP/HTTP receiver decodes what the gateway exports with the
official protobuf definitions (`opentelemetry-proto`); the span tree, the GenAI attributes,
W3C trace context in and out, and collectors that are slow or gone."""

import http.server
import json
import os
import secrets
import socket
import subprocess
import threading
import time

import anthropic
import httpx2 as httpx
import openai
import pytest
from google import genai
from google.genai import types
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from conftest import BIN, CONFIG, SIM_PROVIDER_KEY, free_port, service_account_file, start_gateway

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
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
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
    body = raw.parse()
    usage = body.usage
    assert a["gen_ai.response.id"] == body.id
    assert a["gen_ai.response.finish_reasons"] == [body.choices[0].finish_reason]
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
    # The answering attempt says what came back; the failed one, nothing of it.
    assert second["gen_ai.response.id"] == body.id and second["gen_ai.response.model"] == "text"
    assert second["gen_ai.response.finish_reasons"] == [body.choices[0].finish_reason]
    assert second["gen_ai.usage.output_tokens"] == usage.completion_tokens
    assert "gen_ai.response.id" not in first and "gen_ai.usage.output_tokens" not in first
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

def _chat(g, model):
    chunks = list(g.client().chat.completions.create(
        model=model, stream=True, messages=[{"role": "user", "content": "hi"}]))
    return chunks[0].id, [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]


def _messages(g, model):
    a = anthropic.Anthropic(base_url=g.url, api_key=g.key, max_retries=0)
    with a.messages.stream(model=model, max_tokens=100, messages=[{"role": "user", "content": "hi"}]) as s:
        m = s.get_final_message()
    return m.id, [m.stop_reason]


def _responses(g, model):
    with g.client().responses.stream(model=model, input="hi") as s:
        r = s.get_final_response()
    return r.id, [r.status]


def _gemini(g, model):
    gc = genai.Client(api_key=g.key, http_options=types.HttpOptions(base_url=g.url))
    chunks = list(gc.models.generate_content_stream(model=model, contents="hi"))
    reasons = [c.finish_reason.value for ch in chunks for c in (ch.candidates or []) if c.finish_reason]
    return chunks[0].response_id, reasons


@pytest.mark.parametrize("dialect,model,call", [
    ("chat", "sim/text;gap_ms=40;chunks=6", _chat),
    ("chat from messages", "claude/text;gap_ms=40", _chat),
    ("messages", "claude/text;gap_ms=40", _messages),
    ("messages from chat", "sim/text;gap_ms=40;chunks=6", _messages),
    ("responses", "sim/text;gap_ms=40;chunks=6", _responses),
    ("gemini", "gem/text;gap_ms=100", _gemini),
])
def test_a_streamed_answer_names_its_id_and_finish_reasons_and_its_attempt_lasts_to_its_end(
        traced, dialect, model, call):
    """Each client dialect, passed through or translated: the spans carry the id and the
    finish reasons the client's SDK read, and the answering attempt's span ends with the
    stream (its frames come 40 ms or more apart), not at its first event."""
    g, col = traced
    before = {s.trace_id for s in col.spans}
    answer_id, reasons = call(g, model)
    assert answer_id and reasons, (answer_id, reasons)
    end = time.monotonic() + 15
    while True:
        fresh = [s for s in col.spans if s.trace_id not in before]
        if len([s for s in fresh if s.kind == SERVER]) == 1 and any(s.kind == CLIENT for s in fresh):
            break
        assert time.monotonic() < end, "no spans exported"
        time.sleep(0.05)
    (req,) = [s for s in fresh if s.kind == SERVER]
    (att,) = [s for s in fresh if s.kind == CLIENT]
    a, b = attrs(req), attrs(att)
    assert a["gen_ai.response.id"] == b["gen_ai.response.id"] == answer_id
    assert a["gen_ai.response.finish_reasons"] == b["gen_ai.response.finish_reasons"] == reasons
    assert b["gen_ai.usage.output_tokens"] == a["gen_ai.usage.output_tokens"] > 0
    assert "gen_ai.output.messages" not in a
    # The stream's frames were paced: its attempt lasted through them, inside the request.
    assert att.end_time_unix_nano - att.start_time_unix_nano >= 150_000_000
    assert att.end_time_unix_nano <= req.end_time_unix_nano
    assert "error.type" not in b and "error.type" not in a


@pytest.mark.parametrize("call,model", [(_chat, "sim/text;chunks=2"), (_messages, "claude/text")])
def test_an_unpaced_stream_names_its_answer_on_both_spans(traced, call, model):
    """A short stream that is whole in the upstream's first read: it ends before its
    attempt's span reaches the usage row, and both spans still name the answer."""
    g, col = traced
    before = {s.trace_id for s in col.spans}
    answer_id, reasons = call(g, model)
    end = time.monotonic() + 15
    while True:
        fresh = [s for s in col.spans if s.trace_id not in before]
        if {s.kind for s in fresh} == {SERVER, CLIENT}:
            break
        assert time.monotonic() < end, "no spans exported"
        time.sleep(0.05)
    for s in fresh:
        assert attrs(s)["gen_ai.response.id"] == answer_id, s.kind
        assert attrs(s)["gen_ai.response.finish_reasons"] == reasons, s.kind


def test_a_stream_cut_by_the_upstream_marks_both_spans(traced):
    g, col = traced
    trace_id, _, header = traceparent()
    with pytest.raises(openai.APIError):
        list(g.client().chat.completions.create(
            model="sim/text;disconnect_after=3", stream=True, extra_headers={"traceparent": header},
            messages=[{"role": "user", "content": "hi"}]))
    spans = col.trace(trace_id, 2)
    (req,) = [s for s in spans if s.kind == SERVER]
    (att,) = [s for s in spans if s.kind == CLIENT]
    assert attrs(req)["http.response.status_code"] == 200
    assert attrs(req)["error.type"] == attrs(att)["error.type"] == "upstream_error"
    assert att.status.code == req.status.code == trace_pb2.Status.StatusCode.STATUS_CODE_ERROR
    # What was seen before the cut is still named.
    assert attrs(req)["gen_ai.response.id"]


def test_content_capture_is_opt_in_from_the_config_file(sim, tmp_path):
    col = Collector()
    g = start_gateway(sim.url, tmp_path, env={"OTEL_BSP_SCHEDULE_DELAY": "100"},
                      top=f'[tracing]\notlp_endpoint = "{col.url}"\ncapture_content = true\n')
    try:
        trace_id, _, header = traceparent()
        c = g.client().chat.completions.create(model="sim/text", extra_headers={"traceparent": header},
                                               messages=[{"role": "user", "content": "the secret recipe"}])
        (req,) = [s for s in col.trace(trace_id, 2) if s.kind == SERVER]
        a = attrs(req)
        # The messages as the client sent them, not the rest of the body.
        assert json.loads(a["gen_ai.input.messages"]) == [{"role": "user", "content": "the secret recipe"}]
        # The completion as the conventions shape an output message.
        assert json.loads(a["gen_ai.output.messages"]) == [{
            "role": "assistant", "finish_reason": c.choices[0].finish_reason,
            "parts": [{"type": "text", "content": c.choices[0].message.content}]}]

        # A streamed answer's text and tool calls add up the same way.
        trace_id, _, header = traceparent()
        a_ = anthropic.Anthropic(base_url=g.url, api_key=g.key, max_retries=0)
        with a_.messages.stream(model="claude/text", max_tokens=100, extra_headers={"traceparent": header},
                                messages=[{"role": "user", "content": "hi"}]) as s:
            m = s.get_final_message()
        (req,) = [s for s in col.trace(trace_id, 2) if s.kind == SERVER]
        out = json.loads(attrs(req)["gen_ai.output.messages"])
        text = "".join(b.text for b in m.content if b.type == "text")
        assert out == [{"role": "assistant", "finish_reason": m.stop_reason,
                        "parts": [{"type": "text", "content": text}]}]
        assert "jusinfer.output_truncated" not in attrs(req)

        trace_id, _, header = traceparent()
        tool = {"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}}}}
        chunks = list(g.client().chat.completions.create(
            model="sim/parallel", stream=True, tools=[tool], extra_headers={"traceparent": header},
            messages=[{"role": "user", "content": "weather?"}]))
        calls = {}
        for ch in chunks:
            for tc in (ch.choices[0].delta.tool_calls or []) if ch.choices else []:
                k = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                k["id"] += tc.id or ""
                k["name"] += (tc.function.name or "") if tc.function else ""
                k["arguments"] += (tc.function.arguments or "") if tc.function else ""
        assert calls
        (req,) = [s for s in col.trace(trace_id, 2) if s.kind == SERVER]
        (msg,) = json.loads(attrs(req)["gen_ai.output.messages"])
        assert [p for p in msg["parts"] if p["type"] == "tool_call"] == [
            {"type": "tool_call", "id": k["id"], "name": k["name"], "arguments": json.loads(k["arguments"])}
            for _, k in sorted(calls.items())]
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
        # A collector that is slow or gone is not silent: failed exports are counted and
        # logged (once a minute), and spans dropped from the full queue are logged.
        admin = httpx.Client(base_url=g.url, headers={"authorization": f"Bearer {g.key}"})
        end = time.monotonic() + 20
        while True:
            text = admin.get("/metrics").text
            failed = [l for l in text.splitlines()
                      if l.startswith('jusinfer_trace_spans_exported_total{result="failed"}')]
            if failed and float(failed[0].split()[-1]) > 0 or time.monotonic() > end:
                break
            time.sleep(0.2)
        assert failed and float(failed[0].split()[-1]) > 0, text
        # At most once a minute (the scenario may just pass a minute on a slow machine).
        assert 1 <= g.proc.stderr().count("the OTLP collector refused or missed an export") <= 2
    finally:
        g.proc.stop()
        assert g.proc.p.returncode == 0, g.proc.stderr()[-2000:]
        log = g.proc.stderr()
        if collector != "refusing":  # exports that hang fill the queue: the drops are said
            assert "BatchSpanProcessor.SpanDroppingStarted" in log
        # The SDK's own line per failed export is not let through.
        assert "BatchSpanProcessor.ExportError" not in log
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


def test_grpc_export_is_refused_at_start_and_http_json_gets_protobuf(sim, tmp_path):
    config = tmp_path / "t.toml"
    config.write_text(CONFIG.format(port=free_port(), database=f"sqlite://{tmp_path}/t.db", sim=sim.url,
                                    dead=free_port(), redis="", top="", breaker="failures = 1000",
                                    sa=service_account_file(sim.url, tmp_path)))
    env = {**os.environ, "SIM_PROVIDER_KEY": SIM_PROVIDER_KEY, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317",
           "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "", "OTEL_EXPORTER_OTLP_PROTOCOL": "GRPC"}
    r = subprocess.run([str(BIN), "serve", "--config", str(config)], env=env, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode != 0
    assert "OTEL_EXPORTER_OTLP_PROTOCOL=grpc" in r.stderr and "http/protobuf" in r.stderr, r.stderr

    # `http/json`: OTLP/HTTP receivers read protobuf too; it is said, and spans arrive.
    col = Collector()
    (tmp_path / "json").mkdir()
    g = start_gateway(sim.url, tmp_path / "json",
                      env={"OTEL_EXPORTER_OTLP_ENDPOINT": col.url, "OTEL_BSP_SCHEDULE_DELAY": "100",
                           "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    try:
        trace_id, _, header = traceparent()
        g.client().chat.completions.create(model="sim/text", extra_headers={"traceparent": header},
                                           messages=[{"role": "user", "content": "hi"}])
        assert len(col.trace(trace_id, 2)) == 2
        assert "OTEL_EXPORTER_OTLP_PROTOCOL=http/json" in g.proc.stderr()
    finally:
        g.proc.stop()
        col.shutdown()
