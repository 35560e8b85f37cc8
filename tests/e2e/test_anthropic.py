"""Anthropic behind the OpenAI surface: the official OpenAI SDK through the gateway to an
Anthropic-shaped simulator replaying the recorded Anthropic traffic."""

import json

import openai
import pytest

from conftest import FIXTURES, SIM_PROVIDER_KEY

ANT = FIXTURES / "anthropic"
TEXT = json.loads((ANT / "anthropic_nonstream_text.json").read_text())
WEATHER = json.loads((ANT / "anthropic_nonstream_tool_use_roundtrip.exchange.json").read_text())
THINKING = json.loads((ANT / "anthropic_nonstream_thinking_tool_use_roundtrip.exchange.json").read_text())
MSG = [{"role": "user", "content": "Hello!"}]
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "",
                "parameters": WEATHER[0]["request"]["body"]["tools"][0]["input_schema"]}}
COUNTRY_TOOL = {"type": "function", "function": {"name": "get_user_country", "description": "",
                "parameters": {"type": "object", "properties": {}, "additionalProperties": False}}}


def test_text_non_streaming(client, sim):
    sim.clear()
    raw = client.chat.completions.with_raw_response.create(
        model="claude/text", messages=[{"role": "system", "content": "Be kind."}, *MSG])
    c = raw.parse()
    assert c.choices[0].message.content == TEXT["content"][0]["text"]
    assert c.choices[0].finish_reason == "stop"
    assert c.object == "chat.completion" and c.id.startswith("chatcmpl-")
    assert (c.usage.prompt_tokens, c.usage.completion_tokens, c.usage.total_tokens) == (12, 29, 41)
    assert raw.headers["x-jusinfer-provider"] == "claude"
    sent = sim.last()
    assert sent["path"] == "/v1/messages"
    assert sent["headers"]["x-api-key"] == SIM_PROVIDER_KEY and "authorization" not in sent["headers"]
    assert sent["headers"]["anthropic-version"] == "2023-06-01"
    body = sent["body"]
    assert body["system"] == "Be kind." and body["max_tokens"] == 1024 and body["model"] == "text"
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hello!"}]}]


def test_text_streaming_with_usage(client):
    chunks = list(client.chat.completions.create(model="claude/text", messages=MSG, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == TEXT["content"][0]["text"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 41


def test_streamed_parallel_tool_calls_rebuild_the_recorded_tool_use_inputs(client):
    with client.chat.completions.stream(model="claude/parallel", messages=MSG, tools=[WEATHER_TOOL, COUNTRY_TOOL]) as s:
        final = s.get_final_completion()
    m = final.choices[0].message
    want = [b for b in WEATHER[0]["response"]["body"]["content"] if b["type"] == "tool_use"] + \
           [b for b in THINKING[0]["response"]["body"]["content"] if b["type"] == "tool_use"]
    assert [(t.id, t.function.name, json.loads(t.function.arguments)) for t in m.tool_calls] == \
           [(b["id"], b["name"], b["input"]) for b in want]
    assert m.content == "I'll look up both."
    assert final.choices[0].finish_reason == "tool_calls"


def test_multi_turn_with_tool_results(client, sim):
    req = WEATHER[0]["request"]["body"]
    with client.chat.completions.stream(model="claude/weather", messages=[{"role": "user", "content": req["messages"][0]["content"]}],
                                        tools=[WEATHER_TOOL]) as s:
        first = s.get_final_completion().choices[0].message
    call = first.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"location": "San Francisco, CA", "units": "f"}
    sim.clear()
    history = [{"role": "user", "content": req["messages"][0]["content"]},
               first.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": call.id, "content": "20C and sunny"}]
    c = client.chat.completions.create(model="claude/weather", messages=history, tools=[WEATHER_TOOL])
    assert c.choices[0].message.content == WEATHER[1]["response"]["body"]["content"][0]["text"]
    sent = sim.last()["body"]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"][0] == {"type": "tool_use", "id": call.id, "name": "get_weather",
                                     "input": {"location": "San Francisco, CA", "units": "f"}}
    assert sent[2]["content"][0] == {"type": "tool_result", "tool_use_id": call.id, "content": "20C and sunny"}
    chunks = list(client.chat.completions.create(model="claude/weather", messages=history, tools=[WEATHER_TOOL], stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("The weather in San Francisco")


@pytest.mark.parametrize("stream", [False, True])
def test_json_mode_returns_parseable_json(client, sim, stream):
    fmt = {"type": "json_schema", "json_schema": {"name": "city_info", "schema": {
        "type": "object", "properties": {"city": {"type": "string"}, "population": {"type": "integer"}}}}}
    sim.clear()
    if stream:
        chunks = list(client.chat.completions.create(model="claude/forced-tool", messages=MSG, response_format=fmt, stream=True))
        content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert not any(c.choices and c.choices[0].delta.tool_calls for c in chunks)
    else:
        c = client.chat.completions.create(model="claude/forced-tool", messages=MSG, response_format=fmt)
        content, finish = c.choices[0].message.content, [c.choices[0].finish_reason]
        assert c.choices[0].message.tool_calls is None
    assert json.loads(content) == {"city": "sim", "population": 42}
    assert finish == ["stop"]
    assert sim.last()["body"]["tool_choice"] == {"type": "tool", "name": "city_info"}
    c = client.chat.completions.create(model="claude/forced-tool", messages=MSG, response_format={"type": "json_object"})
    assert isinstance(json.loads(c.choices[0].message.content), dict)
    c = client.chat.completions.create(model="claude/forced-tool", messages=MSG, response_format={
        "type": "json_schema", "json_schema": {"name": "ids", "schema": {"type": "array", "items": {"type": "integer"}}}})
    assert json.loads(c.choices[0].message.content) == [42], "non-object schemas are unwrapped"


def test_thinking_surfaces_as_reasoning_content_and_round_trips(client, sim):
    with client.chat.completions.stream(model="claude/thinking", messages=MSG) as s:
        final = s.get_final_completion()
    m = final.choices[0].message
    assert m.reasoning_content.startswith("This is a straightforward question about pedestrian safety")
    assert m.thinking_blocks[0]["signature"]
    # Non-streaming thinking + tool call, sent back with the tool result: signature intact.
    q = THINKING[0]["request"]["body"]["messages"][0]["content"]
    c = client.chat.completions.create(model="claude/thinking-tool", messages=[{"role": "user", "content": q}],
                                       tools=[COUNTRY_TOOL], reasoning_effort="low")
    msg = c.choices[0].message
    recorded = THINKING[0]["response"]["body"]["content"][0]
    assert msg.reasoning_content == recorded["thinking"]
    assert msg.thinking_blocks == [{"type": "thinking", "thinking": recorded["thinking"], "signature": recorded["signature"]}]
    assert sim.last()["body"]["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    sim.clear()
    c2 = client.chat.completions.create(model="claude/thinking-tool", tools=[COUNTRY_TOOL], messages=[
        {"role": "user", "content": q}, msg.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": msg.tool_calls[0].id, "content": "Mexico"}])
    assert "Mexico City" in c2.choices[0].message.content
    sent = sim.last()["body"]["messages"][1]["content"]
    assert sent[0] == {"type": "thinking", "thinking": recorded["thinking"], "signature": recorded["signature"]}
    assert [b["type"] for b in sent] == ["thinking", "text", "tool_use"]


def test_cached_token_usage_and_cost(client):
    c = client.chat.completions.create(model="claude/cache", messages=MSG)
    u = c.usage
    assert (u.prompt_tokens, u.completion_tokens, u.total_tokens) == (1532, 33, 1565)
    assert u.prompt_tokens_details.cached_tokens == 1111
    want = (3 * 3.0 + 1111 * 0.3 + 418 * 3.75 + 33 * 15.0) / 1e6
    assert abs(u.model_extra["cost"] - want) < 1e-9
    chunks = list(client.chat.completions.create(model="claude/cache-max", messages=MSG, stream=True,
                                                 stream_options={"include_usage": True}))
    u = chunks[-1].usage
    assert u.prompt_tokens_details.cached_tokens == 1031 and u.prompt_tokens == 1042
    assert abs(u.model_extra["cost"] - (11 * 3.0 + 1031 * 0.3 + 100 * 15.0) / 1e6) < 1e-9
    c = client.chat.completions.create(model="claude/text", messages=MSG)
    assert c.usage.model_extra["cost"] is None, "unknown price: null, never a made-up 0"


def test_dropped_params_are_named(client):
    raw = client.chat.completions.with_raw_response.create(
        model="claude/text", messages=MSG, seed=3, logit_bias={"1": 1}, frequency_penalty=0.1,
        extra_body={"x_vendor": 1})
    assert raw.headers["x-jusinfer-dropped-params"] == "frequency_penalty, logit_bias, seed, x_vendor"
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(model="claude/text", messages=MSG, n=2)
    assert ei.value.body["param"] == "n"


@pytest.mark.parametrize("model,exc,status,kind,code", [
    ("claude/err401", openai.APIStatusError, 502, "upstream_error", "upstream_auth_error"),
    ("claude/err429", openai.RateLimitError, 429, "rate_limit_exceeded", "rate_limit_exceeded"),
    ("claude/text;status=400", openai.BadRequestError, 400, "invalid_request_error", "invalid_request_error"),
    ("claude/text;status=403", openai.APIStatusError, 502, "upstream_error", "upstream_auth_error"),
    ("claude/text;status=404", openai.NotFoundError, 404, "invalid_request_error", "model_not_found"),
    ("claude/text;status=413", openai.APIStatusError, 413, "invalid_request_error", "request_too_large"),
    ("claude/text;status=500", openai.APIStatusError, 502, "upstream_error", "upstream_error"),
    ("claude/text;status=529", openai.APIStatusError, 503, "server_error", "overloaded"),
])
def test_anthropic_errors_map_to_openai_errors(client, model, exc, status, kind, code):
    with pytest.raises(exc) as ei:
        client.chat.completions.create(model=model, messages=MSG)
    assert ei.value.status_code == status
    assert (ei.value.body["type"], ei.value.body["code"]) == (kind, code)


def test_overloaded_mid_stream_is_a_final_error_event(client):
    got = []
    with pytest.raises(openai.APIError) as ei:
        for c in client.chat.completions.create(model="claude/overloaded", messages=MSG, stream=True):
            got.append(c)
    assert got and "Overloaded" in str(ei.value.message)


def test_529_falls_back_to_the_next_deployment(client):
    raw = client.chat.completions.with_raw_response.create(model="claude-then-openai", messages=MSG)
    # claude is tried twice (one retry of the overloaded deployment), then sim.
    assert raw.headers["x-jusinfer-attempts"] == "3" and raw.headers["x-jusinfer-provider"] == "sim"


# ---- the same shape whichever provider ran ----

def paths(v, prefix="", out=None, ignore=("obfuscation", "usage.cost")):
    out = {} if out is None else out
    if isinstance(v, dict):
        for k, x in v.items():
            p = f"{prefix}.{k}" if prefix else k
            if p.split("[]")[-1].lstrip(".") in ignore or p in ignore:
                continue
            paths(x, p, out, ignore)
    elif isinstance(v, list):
        for x in v:
            paths(x, prefix + "[]", out, ignore)
        out.setdefault(prefix, set()).add("array")
    else:
        out.setdefault(prefix, set()).add(type(v).__name__)
    return out


def same_shape(a, b):
    assert set(a) == set(b), f"only openai: {set(a) - set(b)}; only anthropic: {set(b) - set(a)}"
    for p in a:
        ta, tb = a[p] - {"NoneType"}, b[p] - {"NoneType"}
        assert not ta or not tb or ta == tb, f"{p}: {ta} vs {tb}"


def test_shape_identity_non_streaming(client):
    # Two OpenAI recordings of different API eras: one has `logprobs: null`, the other the
    # newer usage details and annotations. Together they are what OpenAI sends today.
    oa = {}
    for model in ("sim/text", "sim/cache"):
        r = client.chat.completions.with_raw_response.create(model=model, messages=MSG).http_response.json()
        for p, t in paths(r).items():
            oa.setdefault(p, set()).update(t)
    for model in ("claude/text", "claude/cache"):
        an = client.chat.completions.with_raw_response.create(model=model, messages=MSG).http_response.json()
        same_shape(oa, paths(an))


def test_shape_identity_streaming(gw):
    import urllib.request

    def chunks(model):
        body = json.dumps({"model": model, "stream": True, "stream_options": {"include_usage": True},
                           "messages": [{"role": "user", "content": "hi"}]}).encode()
        req = urllib.request.Request(gw.url + "/v1/chat/completions", data=body, method="POST",
                                     headers={"authorization": f"Bearer {gw.key}", "content-type": "application/json"})
        text = urllib.request.urlopen(req, timeout=20).read().decode()
        out = {}
        for line in text.splitlines():
            if line.startswith("data: {"):
                paths(json.loads(line[6:]), out=out)
        return out
    oa = chunks("sim/answer")
    # Newer OpenAI usage adds prompt_tokens_details.cache_write_tokens (recorded in
    # chat_usage_prompt_cache.responses.json); the streaming recording predates it.
    newer = json.loads((FIXTURES / "openai-chat/chat_usage_prompt_cache.responses.json").read_text())
    for p, t in paths({"usage": newer["responses"][0]["usage"]}).items():
        oa.setdefault(p, set()).update(t)
    same_shape(oa, chunks("claude/text"))


def test_auto_cache_breakpoints_cut_an_agent_sessions_cost(gw, sim):
    """The simulator prices the prompt the way Anthropic's cache does (prefixes up to each
    breakpoint written, then read back). Without breakpoints every turn pays full input;
    with `auto_cache` on the provider, each turn reads what the turn before wrote."""
    from agent_session import published_cost, run_session

    client = gw.client()
    sim.clear()
    plain = run_session(client, "claude/agent-cache")
    assert not any("cache_control" in json.dumps(r["body"]) for r in sim.requests())
    sim.clear()
    cached = run_session(client, "claudecache/agent-cache")
    bodies = [r["body"] for r in sim.requests()]
    assert all(json.dumps(b).count('"cache_control"') <= 4 for b in bodies)
    assert all(b["system"][-1]["cache_control"] == {"type": "ephemeral"} for b in bodies)
    # The gateway's own cost code agrees with Anthropic's published prices, turn by turn.
    for u, cost in plain + cached:
        assert cost == pytest.approx(published_cost(u), rel=1e-9)
    assert all((u["prompt_tokens_details"] or {}).get("cached_tokens", 0) == 0 for u, _ in plain)
    reads = [u["prompt_tokens_details"]["cached_tokens"] for u, _ in cached]
    assert reads[0] == 0 and all(r > 0 for r in reads[1:]), reads
    total_plain = sum(c for _, c in plain)
    total_cached = sum(c for _, c in cached)
    assert cached[0][1] > plain[0][1], "the first turn pays the write premium"
    assert total_cached < 0.4 * total_plain, (total_cached, total_plain)
