"""Chat Completions through the gateway with the official OpenAI SDK."""

import json

import openai
import pytest

from conftest import FIXTURES, SIM_PROVIDER_KEY

PARALLEL = json.loads((FIXTURES / "openai-chat/chat_nonstream_parallel_tool_calls.json").read_text())
TEXT = json.loads((FIXTURES / "openai-chat/chat_nonstream_text.json").read_text())
MSG = [{"role": "user", "content": "What's the weather like in SF?"}]
TOOLS = [
    {"type": "function", "function": {"name": "GetWeatherArgs", "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}, "country": {"type": "string"}, "units": {"type": "string", "enum": ["c", "f"]}}}}},
    {"type": "function", "function": {"name": "get_stock_price", "parameters": {"type": "object", "properties": {
        "ticker": {"type": "string"}, "exchange": {"type": "string"}}}}},
]


def test_non_streaming_returns_the_upstream_answer(client, sim):
    sim.clear()
    raw = client.chat.completions.with_raw_response.create(model="sim/text", messages=MSG)
    c = raw.parse()
    assert c.id == TEXT["id"]
    assert c.choices[0].message.content == TEXT["choices"][0]["message"]["content"]
    assert c.choices[0].finish_reason == "stop"
    assert c.usage.total_tokens == 51
    assert raw.headers["x-jusinfer-provider"] == "sim"
    assert raw.headers["x-jusinfer-attempts"] == "1"
    assert raw.headers["x-request-id"]
    sent = sim.last()
    assert sent["body"]["model"] == "text", "provider/model is sent as the upstream's model name"
    assert sent["headers"]["authorization"] == f"Bearer {SIM_PROVIDER_KEY}", "the provider key, not the client's"
    assert "stream_options" not in sent["body"]


def test_unknown_fields_and_every_documented_field_are_accepted_and_forwarded(client, sim):
    sim.clear()
    client.chat.completions.create(
        model="sim/text",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "developer", "content": [{"type": "text", "text": "really"}]},
            {"role": "user", "content": [{"type": "text", "text": "hi"},
                                          {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}}]},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        ],
        tools=TOOLS, tool_choice="auto", parallel_tool_calls=True,
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
        temperature=0.7, top_p=0.9, max_tokens=50, max_completion_tokens=60, seed=7, stop=["\n\n"], n=1,
        presence_penalty=0.1, frequency_penalty=0.2, logit_bias={"50256": -100}, logprobs=True, top_logprobs=2,
        user="u-1", metadata={"team": "a"},
        extra_body={"x_vendor_option": {"nested": [1, 2.50, "é"]}, "reasoning_effort": "low"},
    )
    body = sim.last()["body"]
    assert body["x_vendor_option"] == {"nested": [1, 2.5, "é"]}
    assert body["reasoning_effort"] == "low"
    assert body["logit_bias"] == {"50256": -100}
    assert body["messages"][2]["content"][1]["image_url"]["detail"] == "low"


def test_streaming_text_without_usage(client, sim):
    sim.clear()
    chunks = list(client.chat.completions.create(model="sim/text", messages=MSG, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("I'm unable to provide real-time weather")
    assert all(c.usage is None for c in chunks), "no usage chunk unless the client asked"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert sim.last()["body"]["stream_options"] == {"include_usage": True}, "the gateway always asks for usage"


def test_streaming_with_include_usage(client):
    chunks = list(client.chat.completions.create(
        model="sim/text", messages=MSG, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].choices == []
    assert chunks[-1].usage.prompt_tokens == 14 and chunks[-1].usage.completion_tokens == 30
    assert all(c.usage is None for c in chunks[:-1])


def test_non_streaming_parallel_tool_calls(client):
    c = client.chat.completions.create(model="sim/parallel", messages=MSG, tools=TOOLS)
    calls = c.choices[0].message.tool_calls
    want = PARALLEL["choices"][0]["message"]["tool_calls"]
    assert [(t.id, t.function.name, t.function.arguments) for t in calls] == \
        [(t["id"], t["function"]["name"], t["function"]["arguments"]) for t in want]
    assert c.choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("style", ["standard", "whole", "noindex", "repeat", "sameindex"])
def test_stream_accumulator_rebuilds_the_non_streaming_tool_calls(client, style):
    want = client.chat.completions.create(model="sim/parallel", messages=MSG, tools=TOOLS).choices[0].message.tool_calls
    with client.chat.completions.stream(model=f"sim/parallel;style={style}", messages=MSG, tools=TOOLS) as s:
        final = s.get_final_completion()
    got = final.choices[0].message.tool_calls
    assert [(t.id, t.type, t.function.name, t.function.arguments) for t in got] == \
        [(t.id, t.type, t.function.name, t.function.arguments) for t in want]
    assert final.choices[0].finish_reason == "tool_calls"


def test_sloppy_upstream_without_ids_still_gives_complete_calls(client):
    with client.chat.completions.stream(model="sim/parallel;style=sloppy", messages=MSG, tools=TOOLS) as s:
        final = s.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert [t.function.name for t in calls] == ["GetWeatherArgs", "get_stock_price"]
    assert json.loads(calls[0].function.arguments) == {"city": "Edinburgh", "country": "GB", "units": "c"}
    assert len({t.id for t in calls}) == 2 and all(t.id.startswith("call_") for t in calls)
    assert final.choices[0].finish_reason == "tool_calls", "stop after tool calls becomes tool_calls"


def test_recorded_tool_stream_round_trip(client):
    req = json.loads((FIXTURES / "openai-chat/chat_stream_tool_call_roundtrip.turn1.request.json").read_text())
    with client.chat.completions.stream(model="sim/capital", messages=req["messages"], tools=req["tools"]) as s:
        final = s.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == \
        ("call_ZR5UUuTt3pf61kjwAJIYdVMj", "get_capital", {"country": "UK"})
    req2 = json.loads((FIXTURES / "openai-chat/chat_stream_tool_call_roundtrip.turn2.request.json").read_text())
    chunks = list(client.chat.completions.create(model="sim/answer", messages=req2["messages"], tools=req2["tools"],
                                                 stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "London" in text
    assert chunks[-1].usage is not None


def test_alias_falls_back_past_a_dead_provider(client):
    raw = client.chat.completions.with_raw_response.create(model="smart", messages=MSG)
    assert raw.parse().choices[0].message.content.startswith("I'm unable")
    assert raw.headers["x-jusinfer-provider"] == "sim"
    assert raw.headers["x-jusinfer-attempts"] == "2"


def test_provider_kind_openai(client, sim):
    sim.clear()
    c = client.chat.completions.create(model="oai/length", messages=MSG, max_tokens=1)
    assert c.choices[0].finish_reason == "length"
    assert sim.last()["body"]["model"] == "length"


def test_request_id_is_echoed(client):
    raw = client.chat.completions.with_raw_response.create(
        model="echo", messages=MSG, extra_headers={"x-request-id": "my-trace-123"})
    assert raw.headers["x-request-id"] == "my-trace-123"


def test_models_list_and_retrieve(client):
    ids = {m.id for m in client.models.list()}
    assert {"echo", "smart", "text", "sim/text", "tools-whole"} <= ids
    assert client.models.retrieve("sim/parallel").owned_by == "sim"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_embeddings_pass_through_and_echo(client, sim):
    sim.clear()
    e = client.embeddings.create(model="sim/text-embedding-3-small", input=["a", "bb"])
    assert len(e.data) == 2 and e.usage.prompt_tokens == 2
    assert sim.last()["path"] == "/v1/embeddings" and sim.last()["body"]["model"] == "text-embedding-3-small"
    e = client.embeddings.create(model="echo", input="hello world")
    assert len(e.data[0].embedding) == 16


# ---- the echo provider (§9) ----

def test_echo_answers_and_streams_word_by_word(client):
    c = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "one two three"}])
    assert c.choices[0].message.content == "one two three"
    assert c.usage.completion_tokens == 3 and c.usage.prompt_tokens > 0
    chunks = list(client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "one two three"}],
                                                 stream=True, stream_options={"include_usage": True}))
    words = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert words == ["one ", "two ", "three"]
    assert chunks[-1].usage.completion_tokens == 3


def test_echo_honours_max_tokens_and_stop(client):
    c = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "a b c d e"}], max_tokens=2)
    assert (c.choices[0].message.content, c.choices[0].finish_reason) == ("a b", "length")
    c = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "a b END c"}], stop="END")
    assert (c.choices[0].message.content, c.choices[0].finish_reason) == ("a b ", "stop")


def test_echo_forced_tool_call_satisfies_schema(client):
    tools = [{"type": "function", "function": {"name": "book", "parameters": {
        "type": "object", "required": ["city", "nights"],
        "properties": {"city": {"type": "string"}, "nights": {"type": "integer", "minimum": 1}}}}}]
    for choice in ["required", {"type": "function", "function": {"name": "book"}}]:
        with client.chat.completions.stream(model="echo", messages=[{"role": "user", "content": "Paris"}],
                                            tools=tools, tool_choice=choice) as s:
            final = s.get_final_completion()
        call = final.choices[0].message.tool_calls[0]
        assert call.function.name == "book"
        assert json.loads(call.function.arguments) == {"city": "Paris", "nights": 1}


def test_echo_json_mode(client):
    c = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}],
                                       response_format={"type": "json_object"})
    assert json.loads(c.choices[0].message.content) == {"echo": "hi"}
    c = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}], response_format={
        "type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object", "properties": {
            "answer": {"type": "string"}, "score": {"type": "number"}}}}})
    assert json.loads(c.choices[0].message.content) == {"answer": "hi", "score": 0}


def test_pass_through_usage_carries_cost_from_the_price_catalog(client):
    c = client.chat.completions.create(model="sim/length", messages=MSG, max_tokens=1)
    assert abs(c.usage.model_extra["cost"] - (79 * 2.5 + 1 * 10.0) / 1e6) < 1e-12
    chunks = list(client.chat.completions.create(model="sim/length", messages=MSG, max_tokens=1, stream=True,
                                                 stream_options={"include_usage": True}))
    assert abs(chunks[-1].usage.model_extra["cost"] - (79 * 2.5 + 1 * 10.0) / 1e6) < 1e-12
    c = client.chat.completions.create(model="sim/text", messages=MSG)
    assert c.usage.model_extra["cost"] is None, "unknown price: null, never a made-up 0"
