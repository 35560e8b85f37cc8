"""Raw SSE bytes with curl: chunk shape, one finish_reason, data: [DONE], and same-dialect
bytes passed through unchanged."""

import json
import subprocess

from conftest import FIXTURES


def curl(gw, body: dict, *extra):
    r = subprocess.run(
        ["curl", "-sS", "-N", "-D", "-", gw.url + "/v1/chat/completions", "-H", f"Authorization: Bearer {gw.key}",
         "-H", "content-type: application/json", "-d", json.dumps(body), *extra],
        capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    head, _, payload = r.stdout.partition(b"\r\n\r\n")
    return head.decode(), payload


def data_lines(payload: bytes):
    frames = [f for f in payload.split(b"\n\n") if f.strip()]
    for f in frames:
        assert f.startswith(b"data: "), f
    return [f[len(b"data: "):] for f in frames]


def check_stream_shape(payload: bytes):
    lines = data_lines(payload)
    assert lines[-1] == b"[DONE]"
    chunks = [json.loads(x) for x in lines[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    finishes = [ch["finish_reason"] for c in chunks for ch in c["choices"] if ch.get("finish_reason")]
    assert len(finishes) == 1
    return chunks


def test_same_dialect_stream_is_passed_through_byte_for_byte(gw):
    head, payload = curl(gw, {"model": "sim/capital", "stream": True, "stream_options": {"include_usage": True},
                              "messages": [{"role": "user", "content": "capital?"}]})
    assert "content-type: text/event-stream" in head.lower()
    want = (FIXTURES / "openai-chat/chat_stream_tool_call_roundtrip.turn1.sse").read_bytes().split(b"\n\n")
    got = payload.split(b"\n\n")
    assert len(got) == len(want)
    for g, w in zip(got, want):
        if b'"choices":[]' in w:
            # The usage chunk gains usage.cost (null: no price for this model); nothing else.
            wj = json.loads(w[len(b"data: "):])
            wj["usage"]["cost"] = None
            assert json.loads(g[len(b"data: "):]) == wj
        else:
            assert g == w, "every other frame keeps the upstream's exact bytes"


def usage_end(raw: bytes) -> int:
    """The offset of the closing brace of the top-level usage object."""
    i = raw.index(b'"usage": {') + len(b'"usage": ')
    depth = 0
    for j in range(i, len(raw)):
        depth += {ord("{"): 1, ord("}"): -1}.get(raw[j], 0)
        if depth == 0:
            return j
    raise AssertionError("no usage object")


def test_non_streaming_body_is_passed_through_byte_for_byte(gw):
    head, payload = curl(gw, {"model": "sim/text", "messages": [{"role": "user", "content": "hi"}]})
    raw = (FIXTURES / "openai-chat/chat_nonstream_text.json").read_bytes()
    at = usage_end(raw)
    # Byte for byte but for usage.cost (§4), spliced in: null, no price is known for "text".
    assert payload == raw[:at] + b',"cost":null' + raw[at:]
    assert "x-jusinfer-provider: sim" in head.lower()


def test_stream_shape_without_usage(gw):
    _, payload = curl(gw, {"model": "sim/text", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    chunks = check_stream_shape(payload)
    assert all(c.get("usage") is None for c in chunks)


def test_whole_tool_calls_become_standard_fragments(gw):
    _, payload = curl(gw, {"model": "tools-whole", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    chunks = check_stream_shape(payload)
    frags = [tc for c in chunks for ch in c["choices"] for tc in ch["delta"].get("tool_calls", [])]
    assert [f["index"] for f in frags] == [0, 1]
    for f in frags:
        assert f["type"] == "function" and f["id"].startswith("call_") and f["function"]["name"]
        json.loads(f["function"]["arguments"])


def test_echo_stream_shape(gw):
    _, payload = curl(gw, {"model": "echo", "stream": True, "stream_options": {"include_usage": True},
                           "messages": [{"role": "user", "content": "a b c"}]})
    lines = data_lines(payload)
    usage = json.loads(lines[-2])
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 3
