"""POST /v1/messages through the gateway with the official `anthropic` SDK: served by an
OpenAI-shaped simulator (translated both ways), passed through to an Anthropic-shaped one,
and answered in Anthropic's error shapes."""

import json
import uuid

import anthropic
import httpx2 as httpx
import pytest

from conftest import FIXTURES

TOOLS = [
    {"name": "GetWeatherArgs", "description": "weather", "input_schema": {"type": "object", "properties": {
        "city": {"type": "string"}, "country": {"type": "string"}, "units": {"type": "string"}}}},
    {"name": "get_stock_price", "description": "stock", "input_schema": {"type": "object", "properties": {
        "ticker": {"type": "string"}}}},
]
ASK = [{"role": "user", "content": "What is the weather in Edinburgh, and Apple's stock price?"}]


def tag() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture()
def ac(gw):
    return anthropic.Anthropic(base_url=gw.url, api_key=gw.key, max_retries=0)


def recorded_calls():
    v = json.loads((FIXTURES / "openai-chat/chat_nonstream_parallel_tool_calls.json").read_text())
    return [(c["function"]["name"], json.loads(c["function"]["arguments"]))
            for c in v["choices"][0]["message"]["tool_calls"]]


def test_text_from_an_openai_upstream(ac, sim):
    sim.clear()
    m = ac.messages.create(model="sim/text", max_tokens=200, messages=[{"role": "user", "content": "hi"}],
                           system="Be brief.", stop_sequences=["END"], metadata={"user_id": "u-7"})
    assert m.id.startswith("msg_") and m.type == "message" and m.role == "assistant"
    assert m.model == "sim/text"
    assert m.content[0].type == "text" and m.content[0].text
    assert m.stop_reason == "end_turn"
    assert m.usage.input_tokens > 0 and m.usage.output_tokens > 0
    sent = sim.last()["body"]
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert (sent["stop"], sent["user"], sent["max_tokens"]) == (["END"], "u-7", 200)


def test_streamed_text_with_get_final_message(ac):
    with ac.messages.stream(model="sim/text", max_tokens=200, messages=[{"role": "user", "content": "hi"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text and final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize("style", ["standard", "whole", "noindex", "sameindex", "sloppy"])
def test_streamed_parallel_tool_use_rebuilds_the_recorded_calls(ac, style):
    with ac.messages.stream(model=f"sim/parallel;style={style}", max_tokens=500, messages=ASK, tools=TOOLS) as s:
        final = s.get_final_message()
    uses = [b for b in final.content if b.type == "tool_use"]
    assert [(b.name, b.input) for b in uses] == recorded_calls()
    assert len({b.id for b in uses}) == len(uses)
    assert final.stop_reason == "tool_use"


def test_nonstreaming_parallel_tool_use(ac):
    m = ac.messages.create(model="sim/parallel", max_tokens=500, messages=ASK, tools=TOOLS,
                           tool_choice={"type": "any", "disable_parallel_tool_use": False})
    assert [(b.name, b.input) for b in m.content if b.type == "tool_use"] == recorded_calls()
    assert m.stop_reason == "tool_use"


def test_a_tool_result_turn_reaches_the_upstream_as_tool_messages(ac, sim):
    sim.clear()
    m = ac.messages.create(model="sim/text", max_tokens=100, tools=TOOLS, messages=[
        *ASK,
        {"role": "assistant", "content": [{"type": "text", "text": "Checking."},
                                          {"type": "tool_use", "id": "toolu_a", "name": "get_stock_price",
                                           "input": {"ticker": "AAPL"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_a", "content": "231.4",
                                      "is_error": False}]},
    ])
    assert m.content[0].type == "text"
    msgs = sim.last()["body"]["messages"]
    assert msgs[1]["tool_calls"][0]["id"] == "a", "our toolu_ prefix is taken off going back"
    assert json.loads(msgs[1]["tool_calls"][0]["function"]["arguments"]) == {"ticker": "AAPL"}
    assert msgs[2] == {"role": "tool", "tool_call_id": "a", "content": "231.4"}


def test_cached_usage_is_split_the_anthropic_way(ac):
    m = ac.messages.create(model="sim/cache", max_tokens=100, messages=[{"role": "user", "content": "hi"}])
    assert m.usage.cache_read_input_tokens == 4012
    assert m.usage.input_tokens == 4020 - 4012


def test_stream_message_start_once_and_usage_in_message_delta(gw):
    with httpx.stream("POST", gw.url + "/v1/messages", timeout=30,
                      headers={"x-api-key": gw.key, "anthropic-version": "2023-06-01"},
                      json={"model": "sim/text", "max_tokens": 100, "stream": True,
                            "messages": [{"role": "user", "content": "hi"}]}) as r:
        assert r.status_code == 200
        raw = r.read().decode()
    events = [b.split("\n", 1) for b in raw.strip().split("\n\n")]
    names = [e[0].removeprefix("event: ") for e in events]
    assert names[0] == "message_start" and names.count("message_start") == 1
    assert names[-2:] == ["message_delta", "message_stop"]
    start = json.loads(events[0][1].removeprefix("data: "))
    delta = json.loads(events[-2][1].removeprefix("data: "))
    assert start["message"]["usage"]["input_tokens"] > 0
    assert delta["usage"]["input_tokens"] > 0 and delta["usage"]["output_tokens"] > 0


def test_an_upstream_failure_mid_stream_ends_with_an_error_event(gw):
    with httpx.stream("POST", gw.url + "/v1/messages", timeout=30, headers={"x-api-key": gw.key},
                      json={"model": f"sim/fast;stall_after=3;tag={tag()}", "max_tokens": 100, "stream": True,
                            "messages": [{"role": "user", "content": "hi"}]}) as r:
        raw = r.read().decode()
    events = raw.strip().split("\n\n")
    assert any(e.startswith("event: ping\n") for e in events), "a quiet upstream gets pings"
    last = events[-1]
    assert last.startswith("event: error\n"), last
    err = json.loads(last.split("data: ", 1)[1])
    assert err["type"] == "error" and err["error"]["type"] in {"api_error", "overloaded_error"}


@pytest.mark.parametrize("model", ["claude/text", "claude/weather"])
def test_anthropic_upstream_is_passed_through_byte_for_byte(gw, sim, model):
    body = {"model": model, "max_tokens": 256, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.stream("POST", gw.url + "/v1/messages", timeout=30,
                      headers={"x-api-key": gw.key, "anthropic-version": "2023-06-01",
                               "anthropic-beta": "interleaved-thinking-2025-05-14"}, json=body) as r:
        via_gateway = r.read()
    sent = sim.last()
    assert sent["headers"]["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert sent["headers"]["x-api-key"] != gw.key, "the provider's key, never the client's"
    direct = httpx.post(sim.url + "/v1/messages", json=dict(body, model=model.split("/", 1)[1]), timeout=30)
    assert via_gateway == direct.content


def test_anthropic_upstream_nonstreaming_pass_through_and_usage(ac, gw):
    m = ac.messages.create(model="claude/cache", max_tokens=100, messages=[{"role": "user", "content": "hi"}])
    assert m.usage.cache_read_input_tokens > 0


def test_error_shapes(gw, ac):
    bad = anthropic.Anthropic(base_url=gw.url, api_key="jinf_" + "x" * 40, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as e:
        bad.messages.create(model="sim/text", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert e.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.NotFoundError) as e:
        ac.messages.create(model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert e.value.body["type"] == "error" and e.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.RateLimitError):
        ac.messages.create(model="sim/err429", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    r = httpx.post(gw.url + "/v1/messages", headers={"x-api-key": gw.key},
                   json={"model": "sim/text", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in r.json()["error"]["message"]


def test_count_tokens(ac):
    est = ac.messages.with_raw_response.count_tokens(model="sim/text", messages=ASK, tools=TOOLS, system="Be brief.")
    assert est.headers["x-jusinfer-token-count"] == "estimated; tokenizer=o200k_base"
    assert 20 < est.parse().input_tokens < 200
    up = ac.messages.with_raw_response.count_tokens(model="claude/text", messages=ASK)
    assert up.headers["x-jusinfer-token-count"] == "upstream"
    assert up.parse().input_tokens == 4242


def test_bearer_auth_works_too(gw):
    r = httpx.post(gw.url + "/v1/messages", headers={"authorization": f"Bearer {gw.key}"},
                   json={"model": "echo", "max_tokens": 50, "messages": [{"role": "user", "content": "echo me"}]})
    assert r.status_code == 200, r.text
    assert r.json()["content"][0]["text"] == "echo me"


def test_thinking_from_reasoning_content(ac):
    with ac.messages.stream(model="sim/reasoning", max_tokens=100, messages=[{"role": "user", "content": "hi"}]) as s:
        final = s.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == "The user greets me. I greet back."
    assert final.content[1].text == "Hello!"
    m = ac.messages.create(model="sim/reasoning", max_tokens=100, messages=[{"role": "user", "content": "hi"}])
    assert [b.type for b in m.content] == ["thinking", "text"]


def test_streamed_cached_usage_reaches_the_final_message(ac):
    with ac.messages.stream(model="sim/cache", max_tokens=100, messages=[{"role": "user", "content": "hi"}]) as s:
        final = s.get_final_message()
    assert final.usage.cache_read_input_tokens == 4012, "taken from message_delta"
    assert final.usage.input_tokens == 8


def test_more_error_types(gw, ac):
    limited = httpx.post(gw.url + "/admin/keys", headers={"authorization": f"Bearer {gw.key}"},
                         json={"name": "only-echo", "models": ["echo"]}).json()["key"]
    other = anthropic.Anthropic(base_url=gw.url, api_key=limited, max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError) as e:
        other.messages.create(model="sim/text", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert e.value.body["error"]["type"] == "permission_error"
    with pytest.raises(anthropic.InternalServerError) as e:
        ac.messages.create(model=f"sim/fast;status=500;tag={tag()}", max_tokens=10,
                           messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 502 and e.value.body["error"]["type"] == "api_error"
    with pytest.raises(anthropic.APIStatusError) as e:
        ac.messages.create(model=f"claude/text;status=529;tag={tag()}", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert e.value.body["error"]["type"] == "overloaded_error"


def test_claude_code_shaped_request_round_trips(ac, sim):
    sim.clear()
    tools = [{"name": f"Tool{i}", "description": f"tool {i}",
              "input_schema": {"type": "object", "properties": {"arg": {"type": "string"}}, "required": ["arg"]}}
             for i in range(25)]
    m = ac.messages.create(
        model="sim/text", max_tokens=4096, tools=tools, tool_choice={"type": "auto"},
        system=[{"type": "text", "text": "You are Claude Code."},
                {"type": "text", "text": "Project rules.", "cache_control": {"type": "ephemeral"}}],
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "list files", "cache_control": {"type": "ephemeral"}}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01", "name": "Tool3", "input": {"arg": "ls"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "is_error": True,
                                          "content": [{"type": "text", "text": "ls: permission denied"}]}]},
        ])
    assert m.content[0].type == "text"
    sent = sim.last()["body"]
    assert sent["messages"][0] == {"role": "system", "content": "You are Claude Code.\nProject rules."}
    assert len(sent["tools"]) == 25 and sent["tools"][3]["function"]["parameters"] == tools[3]["input_schema"]
    assert sent["messages"][2]["tool_calls"][0]["function"]["name"] == "Tool3"
    assert sent["messages"][3] == {"role": "tool", "tool_call_id": "01", "content": "Error: ls: permission denied"}


def test_request_too_large_in_anthropic_shape(gw):
    big = "x" * (2 * 1024 * 1024)
    r = httpx.post(gw.url + "/v1/messages", headers={"x-api-key": gw.key}, timeout=30,
                   json={"model": "sim/text", "max_tokens": 10, "messages": [{"role": "user", "content": big}]})
    assert r.status_code == 413
    assert r.json() == {"type": "error", "error": {"type": "request_too_large", "message": r.json()["error"]["message"]}}


CLAUDE_CODE_BETAS = "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27"


@pytest.mark.parametrize("model", ["echo", "sim/text"])
def test_regression_claude_code_system_entries_mid_conversation(gw, sim, model):
    # Claude Code 2.1 sends `{"role": "system"}` entries inside `messages`, to `?beta=true`,
    # with an `anthropic-beta` list: they used to be a 400 on every non-Anthropic model.
    body = {"model": model, "max_tokens": 200, "stream": False,
            "system": [{"type": "text", "text": "You are Claude Code."}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]},
                         {"role": "assistant", "content": [{"type": "text", "text": "Hi."}]},
                         {"role": "system", "content": [{"type": "text", "text": "<system-reminder>todo</system-reminder>"}]},
                         {"role": "user", "content": "go on"}],
            "context_management": {"edits": [{"type": "clear_thinking_20251015"}]}}
    headers = {"x-api-key": gw.key, "anthropic-version": "2023-06-01", "anthropic-beta": CLAUDE_CODE_BETAS}
    sim.clear()
    r = httpx.post(gw.url + "/v1/messages?beta=true", headers=headers, json=body, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["content"][0]["type"] == "text"
    assert r.headers["x-jusinfer-dropped-params"] == "context_management"
    if model == "sim/text":
        sent = sim.last()["body"]["messages"]
        assert [m["role"] for m in sent] == ["system", "user", "assistant", "system", "user"]
        assert sent[3] == {"role": "system", "content": "<system-reminder>todo</system-reminder>"}
    n = httpx.post(gw.url + "/v1/messages/count_tokens?beta=true", headers=headers,
                   json={k: v for k, v in body.items() if k not in ("max_tokens", "stream")}, timeout=30)
    assert n.status_code == 200, n.text
    assert n.json()["input_tokens"] > 10


def test_regression_structured_output_reaches_a_translated_model(gw, sim, ac):
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
              "required": ["city", "population"], "additionalProperties": False}
    # On echo the answer is generated from the schema: JSON that fits it, not plain text.
    m = ac.messages.create(model="echo", max_tokens=200, messages=[{"role": "user", "content": "Paris?"}],
                           extra_body={"output_config": {"format": {"type": "json_schema", "schema": schema},
                                                         "effort": "low"}})
    out = json.loads(m.content[0].text)
    assert set(out) == {"city", "population"} and isinstance(out["population"], int)
    # Upstream, it is Chat's response_format; the older beta field works the same.
    for extra in ({"output_config": {"format": {"type": "json_schema", "schema": schema}, "effort": "medium"}},
                  {"output_format": {"type": "json_schema", "schema": schema}}):
        sim.clear()
        raw = ac.messages.with_raw_response.create(model="sim/text", max_tokens=50,
                                                   messages=[{"role": "user", "content": "Paris?"}],
                                                   extra_body=extra)
        assert "x-jusinfer-dropped-params" not in raw.headers
        sent = sim.last()["body"]
        assert sent["response_format"] == {"type": "json_schema",
                                           "json_schema": {"name": "output", "schema": schema, "strict": True}}
        assert sent.get("reasoning_effort") == ("medium" if "output_config" in extra else None)
    # Anything not carried over is named, whatever its name.
    raw = ac.messages.with_raw_response.create(model="sim/text", max_tokens=50,
                                               messages=[{"role": "user", "content": "hi"}],
                                               extra_body={"top_k": 3, "brand_new_field": {"x": 1}})
    assert sorted(raw.headers["x-jusinfer-dropped-params"].split(", ")) == ["brand_new_field", "top_k"]


def test_effort_on_a_model_that_does_not_reason_is_dropped_and_named(gw, sim, ac):
    # Claude Code sends `output_config.effort`; as `reasoning_effort` it is a 400 at OpenAI
    # for models that do not reason. The gateway tries once more without it, and says so.
    sim.clear()
    raw = ac.messages.with_raw_response.create(model="sim/text;no_effort", max_tokens=50,
                                               messages=[{"role": "user", "content": "hi"}],
                                               extra_body={"output_config": {"effort": "high"}})
    assert raw.parse().content[0].text
    assert raw.headers["x-jusinfer-dropped-params"] == "output_config.effort"
    sent = [r["body"] for r in sim.requests()]
    assert [("reasoning_effort" in b) for b in sent] == [True, False]


def test_the_probes_clients_send_before_their_first_call(gw):
    for path in ("/", "/api/hello"):
        assert httpx.head(gw.url + path).status_code == 200
        assert httpx.get(gw.url + path).json()["service"] == "jusinfer"
