"""The Gemini API inbound: Google's own `google-genai` SDK pointed at the gateway, reaching
a Gemini upstream (passed through byte for byte) and Anthropic and OpenAI-shaped upstreams
(translated through the Chat hub), streaming and function calling included."""

import base64
import json
import os
import time

import httpx
import pytest
from google import genai
from google.genai import errors, types

from conftest import FIXTURES, SIM_PROVIDER_KEY

GEM = FIXTURES / "gemini"
ANT = FIXTURES / "anthropic"
ASK = "What is 4200 + 42?"


def gclient(gw, key=None, version=None):
    """The SDK at the gateway (its default API version, or `version`). Keep the client in a
    variable while a stream is read: a collected client closes its connection pool."""
    return genai.Client(api_key=key or gw.key,
                        http_options=types.HttpOptions(base_url=gw.url, api_version=version))


def exchange(path, turn=0):
    v = json.loads(path.read_text())
    t = v[turn] if isinstance(v, list) else v
    body = t["response"]["body"]
    return t["request"]["body"], json.loads(body) if isinstance(body, str) else body


def sse_events(path):
    text = path.read_text().replace("\r\n", "\n")
    return [json.loads(line[6:]) for line in text.split("\n") if line.startswith("data: ")]


WEATHER = types.Tool(function_declarations=[types.FunctionDeclaration(
    name="get_weather", description="Get the current weather in a given location",
    parameters=types.Schema(type="OBJECT", properties={"location": types.Schema(type="STRING")},
                            required=["location"]))])


# --- to a Gemini upstream: pass-through ---------------------------------------------------

def test_pass_through_text_is_the_upstreams_answer(gw, sim):
    sim.clear()
    _, want = exchange(GEM / "gemini_nonstream_text.exchange.json")
    g = gclient(gw)
    r = g.models.generate_content(
        model="gem/text", contents=ASK,
        config=types.GenerateContentConfig(system_instruction="Be kind.", max_output_tokens=300,
                                           safety_settings=[types.SafetySetting(
                                               category="HARM_CATEGORY_HARASSMENT", threshold="BLOCK_NONE")]))
    assert r.text == want["candidates"][0]["content"]["parts"][0]["text"]
    assert r.usage_metadata.total_token_count == want["usageMetadata"]["totalTokenCount"]
    assert r.usage_metadata.thoughts_token_count == want["usageMetadata"]["thoughtsTokenCount"]
    assert r.response_id == want["responseId"]
    sent = sim.last()
    assert sent["path"] == "/v1beta/models/text:generateContent"
    # The gateway's key upstream, never the client's.
    assert sent["headers"]["x-goog-api-key"] == SIM_PROVIDER_KEY
    # The client's request as it sent it: fields the Chat hub has no place for included.
    assert sent["body"]["safetySettings"] == [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]
    assert sent["body"]["systemInstruction"]["parts"] == [{"text": "Be kind."}]
    assert sent["body"]["generationConfig"] == {"maxOutputTokens": 300}


def test_pass_through_stream_relays_every_chunk(gw, sim):
    events = sse_events(GEM / "gemini_stream_text.sse")
    with httpx.stream("POST", gw.url + "/v1beta/models/gem/text:streamGenerateContent?alt=sse",
                      headers={"x-goog-api-key": gw.key}, json={"contents": [{"parts": [{"text": ASK}]}]},
                      timeout=10) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode()
    assert [json.loads(line[6:]) for line in raw.replace("\r\n", "\n").split("\n")
            if line.startswith("data: ")] == events
    assert sim.last()["path"] == "/v1beta/models/text:streamGenerateContent?alt=sse"
    # And through the SDK, on both API versions.
    g = gclient(gw, version="v1beta")
    chunks = list(g.models.generate_content_stream(model="gem/text", contents=ASK))
    assert "".join(c.text or "" for c in chunks) == "".join(
        p["text"] for e in events for p in e["candidates"][0]["content"]["parts"])
    assert chunks[-1].usage_metadata.total_token_count == events[-1]["usageMetadata"]["totalTokenCount"]


def test_pass_through_keeps_the_thought_signature_across_turns(gw, sim):
    """gemini-3 refuses a turn whose call lost its thoughtSignature (the simulator does too):
    the client's parts reach it as they were."""
    g = gclient(gw)
    tool = types.Tool(function_declarations=[types.FunctionDeclaration(
        name="get_country", description="", parameters_json_schema={"type": "object", "properties": {}})])
    config = types.GenerateContentConfig(tools=[tool])
    ask = types.Content(role="user", parts=[types.Part(text="What is the capital of the user country? Call the tool")])
    chunks = list(g.models.generate_content_stream(model="gem/thinking-sig", contents=[ask], config=config))
    parts = [p for c in chunks for p in c.candidates[0].content.parts]
    call = next(p for p in parts if p.function_call)
    assert call.function_call.name == "get_country" and call.thought_signature
    answer = types.Content(role="user", parts=[types.Part.from_function_response(
        name="get_country", response={"result": "Mexico"})])
    turn2 = [ask, types.Content(role="model", parts=[call]), answer]
    chunks = list(g.models.generate_content_stream(model="gem/thinking-sig", contents=turn2, config=config))
    assert "Mexico City" in "".join(c.text or "" for c in chunks)
    model_turn = sim.last()["body"]["contents"][1]["parts"][0]
    assert model_turn["functionCall"]["name"] == "get_country"
    # Byte for byte (the SDK writes bytes back as URL-safe base64; the gateway leaves it).
    assert base64.urlsafe_b64decode(model_turn["thoughtSignature"]) == call.thought_signature


def test_count_tokens_and_embeddings_pass_through(gw, sim):
    g = gclient(gw)
    sim.clear()
    n = g.models.count_tokens(model="gem/text", contents=ASK)
    sent = sim.last()
    assert sent["path"].endswith("/models/text:countTokens")
    assert n.total_tokens > 0
    e = g.models.embed_content(model="gem/text-embedding-004", contents=["one", "two"],
                               config=types.EmbedContentConfig(output_dimensionality=8))
    sent = sim.last()
    assert sent["path"] == "/v1beta/models/text-embedding-004:batchEmbedContents"
    assert [r["model"] for r in sent["body"]["requests"]] == ["models/text-embedding-004"] * 2
    assert [r["outputDimensionality"] for r in sent["body"]["requests"]] == [8, 8]
    assert len(e.embeddings) == 2 and all(x.values for x in e.embeddings)


def test_pass_through_thought_summaries(gw):
    events = sse_events(GEM / "gemini_stream_thinking_thought_summaries.sse")
    g = gclient(gw)
    config = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(include_thoughts=True,
                                                                              thinking_budget=6400))
    chunks = list(g.models.generate_content_stream(model="gem/thoughts", contents=ASK, config=config))
    got = [(p.text, bool(p.thought)) for c in chunks for p in c.candidates[0].content.parts]
    want = [(p["text"], bool(p.get("thought"))) for e in events for p in e["candidates"][0]["content"]["parts"]]
    assert got == want and any(t for _, t in want)


def test_embeddings_on_vertex_through_predict(gw, sim):
    g = gclient(gw)
    sim.clear()
    e = g.models.embed_content(model="vtx/text-embedding-005", contents=["one", "two"],
                               config=types.EmbedContentConfig(task_type="RETRIEVAL_QUERY",
                                                               output_dimensionality=4))
    assert [len(x.values) for x in e.embeddings] == [4, 4]
    sent = sim.last()
    assert sent["path"].endswith("/publishers/google/models/text-embedding-005:predict")
    assert sent["body"] == {"instances": [{"content": "one", "task_type": "RETRIEVAL_QUERY"},
                                          {"content": "two", "task_type": "RETRIEVAL_QUERY"}],
                            "parameters": {"outputDimensionality": 4}}


# --- to other upstreams: through the Chat hub ---------------------------------------------

def test_count_tokens_asks_anthropic_with_the_translated_request(gw, sim):
    g = gclient(gw)
    sim.clear()
    n = g.models.count_tokens(model="claude/text", contents=ASK)
    assert n.total_tokens == 4242  # the simulator's count, passed on
    sent = sim.last()
    assert sent["path"] == "/v1/messages/count_tokens"
    assert sent["body"]["messages"] == [{"role": "user", "content": [{"type": "text", "text": ASK}]}]
    # The whole request (system, tools) as `generateContentRequest`.
    r = httpx.post(gw.url + "/v1beta/models/claude/text:countTokens", headers={"x-goog-api-key": gw.key},
                   json={"generateContentRequest": {"model": "models/claude/text",
                         "contents": [{"role": "user", "parts": [{"text": ASK}]}],
                         "systemInstruction": {"parts": [{"text": "Be kind."}]},
                         "tools": [WEATHER.model_dump(mode="json", exclude_none=True)]}}, timeout=10)
    assert r.status_code == 200 and r.json() == {"totalTokens": 4242}
    assert r.headers["x-jusinfer-token-count"] == "upstream"
    body = sim.last()["body"]
    assert body["system"] == "Be kind."
    assert body["tools"][0]["name"] == "get_weather" and "max_tokens" not in body


def test_anthropic_upstream_text_and_stream(gw, sim):
    want = json.loads((ANT / "anthropic_nonstream_text.json").read_text())
    g = gclient(gw)
    sim.clear()
    r = g.models.generate_content(model="claude/text", contents=ASK,
                                  config=types.GenerateContentConfig(system_instruction="Be kind.",
                                                                     max_output_tokens=200, top_k=3))
    assert r.text == want["content"][0]["text"]
    assert r.candidates[0].finish_reason == types.FinishReason.STOP
    u = want["usage"]
    assert r.usage_metadata.prompt_token_count == u["input_tokens"] + u.get("cache_read_input_tokens", 0) + \
        u.get("cache_creation_input_tokens", 0)
    assert r.usage_metadata.candidates_token_count == u["output_tokens"]
    assert r.model_version == "claude/text"
    sent = sim.last()
    assert sent["path"] == "/v1/messages"
    assert sent["body"]["system"] == "Be kind."
    assert sent["body"]["max_tokens"] == 200 and sent["body"]["messages"][0]["role"] == "user"
    # Streamed: text parts as they come, the finish and usage last.
    chunks = list(g.models.generate_content_stream(model="claude/text", contents=ASK))
    assert "".join(c.text or "" for c in chunks) == want["content"][0]["text"]
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.candidates_token_count == u["output_tokens"]


def test_anthropic_upstream_function_call_round_trip(gw, sim):
    _, turn1 = exchange(ANT / "anthropic_nonstream_tool_use_roundtrip.exchange.json", 0)
    _, turn2 = exchange(ANT / "anthropic_nonstream_tool_use_roundtrip.exchange.json", 1)
    g = gclient(gw)
    config = types.GenerateContentConfig(tools=[WEATHER], max_output_tokens=1024)
    ask = types.Content(role="user", parts=[types.Part(text="What is the weather like in San Francisco?")])
    r = g.models.generate_content(model="claude/weather", contents=[ask], config=config)
    use = next(b for b in turn1["content"] if b["type"] == "tool_use")
    assert [(c.name, c.args) for c in r.function_calls] == [(use["name"], use["input"])]
    assert r.candidates[0].finish_reason == types.FinishReason.STOP
    sent = sim.last()["body"]
    assert sent["tools"][0]["name"] == "get_weather"
    assert sent["tools"][0]["input_schema"]["properties"]["location"]["type"] == "string"
    # Turn 2: the SDK's function response (no id) finds its call by name.
    model_turn = r.candidates[0].content
    answer = types.Content(role="user", parts=[types.Part.from_function_response(
        name="get_weather", response={"result": "15 degrees"})])
    r2 = g.models.generate_content(model="claude/weather", contents=[ask, model_turn, answer], config=config)
    assert r2.text == "".join(b["text"] for b in turn2["content"] if b["type"] == "text")
    msgs = sim.last()["body"]["messages"]
    call = next(b for b in msgs[1]["content"] if b["type"] == "tool_use")
    result = next(b for b in msgs[2]["content"] if b["type"] == "tool_result")
    assert call["id"] == use["id"] and result["tool_use_id"] == use["id"]
    assert "15 degrees" in json.dumps(result["content"])


def test_anthropic_thinking_streams_as_thoughts_with_their_signature(gw, sim):
    want = [json.loads(line[6:]) for line in (ANT / "anthropic_stream_thinking.sse").read_text().split("\n")
            if line.startswith("data: ")]
    thinking = "".join(e["delta"].get("thinking", "") for e in want if e["type"] == "content_block_delta")
    signature = "".join(e["delta"].get("signature", "") for e in want if e["type"] == "content_block_delta")
    assert thinking and signature
    g = gclient(gw)
    config = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(include_thoughts=True,
                                                                              thinking_budget=2048))
    chunks = list(g.models.generate_content_stream(model="claude/thinking", contents=ASK, config=config))
    parts = [p for c in chunks if c.candidates and c.candidates[0].content for p in c.candidates[0].content.parts]
    assert "".join(p.text or "" for p in parts if p.thought) == thinking
    # The SDK reads thoughtSignature as base64: the bytes are Anthropic's signature's.
    assert [p.thought_signature for p in parts if p.thought_signature] == [base64.b64decode(signature)]
    assert sim.last()["body"]["thinking"]["type"] == "enabled"
    # Without includeThoughts, no thought parts.
    chunks = list(g.models.generate_content_stream(model="claude/thinking", contents=ASK))
    assert not any(p.thought for c in chunks if c.candidates and c.candidates[0].content
                   for p in c.candidates[0].content.parts)


def test_anthropic_thinking_block_goes_back_with_its_call(gw, sim):
    """Claude with thinking wants its thinking block, signature intact, on the turn that
    called a tool: the thought parts the client got carry it back."""
    _, turn1 = exchange(ANT / "anthropic_nonstream_thinking_tool_use_roundtrip.exchange.json", 0)
    block = next(b for b in turn1["content"] if b["type"] == "thinking")
    g = gclient(gw)
    tool = types.Tool(function_declarations=[types.FunctionDeclaration(
        name="get_user_country", parameters_json_schema={"type": "object", "properties": {}})])
    config = types.GenerateContentConfig(tools=[tool], thinking_config=types.ThinkingConfig(
        include_thoughts=True, thinking_budget=1024))
    ask = types.Content(role="user", parts=[types.Part(text="What is the capital of the user country?")])
    r = g.models.generate_content(model="claude/thinking-tool", contents=[ask], config=config)
    thought = next(p for p in r.candidates[0].content.parts if p.thought)
    assert thought.text == block["thinking"] and thought.thought_signature == base64.b64decode(block["signature"])
    assert [c.name for c in r.function_calls] == ["get_user_country"]
    answer = types.Content(role="user", parts=[types.Part.from_function_response(
        name="get_user_country", response={"result": "Mexico"})])
    g.models.generate_content(model="claude/thinking-tool", contents=[ask, r.candidates[0].content, answer],
                              config=config)
    sent = sim.last()["body"]["messages"][1]["content"]
    assert sent[0] == {"type": "thinking", "thinking": block["thinking"], "signature": block["signature"]}
    assert [b["type"] for b in sent] == [b["type"] for b in turn1["content"]]


def test_metered_and_routed_like_every_dialect(gw, sim):
    """A usage row per request with its tokens; a route's fallback serves the client."""
    k = httpx.post(gw.url + "/admin/keys", headers={"authorization": f"Bearer {gw.key}"},
                   json={"name": f"gemini-{os.urandom(3).hex()}"}, timeout=10).json()
    g = gclient(gw, key=k["key"])
    _, want = exchange(GEM / "gemini_nonstream_text.exchange.json")
    g.models.generate_content(model="gem/text", contents=ASK)
    list(g.models.generate_content_stream(model="gem/text", contents=ASK))
    # claude answers 529, then sim/text serves.
    r = g.models.generate_content(model="claude-then-openai", contents=ASK)
    assert r.text and r.sdk_http_response.headers["x-jusinfer-provider"] == "sim"
    deadline, rows = time.time() + 10, []
    while time.time() < deadline:
        rows = httpx.get(gw.url + f"/admin/usage?by=model&key={k['id']}&since=1h",
                         headers={"authorization": f"Bearer {gw.key}"}, timeout=10).json()["data"]
        if sum(x["requests"] for x in rows) >= 3:
            break
        time.sleep(0.1)
    by = {x["group"]: x for x in rows}
    assert by["gem/text"]["requests"] == 2
    assert by["gem/text"]["prompt_tokens"] == 2 * want["usageMetadata"]["promptTokenCount"]
    events = sse_events(GEM / "gemini_stream_text.sse")
    out = [u.get("candidatesTokenCount", 0) + u.get("thoughtsTokenCount", 0)
           for u in (want["usageMetadata"], events[-1]["usageMetadata"])]
    assert by["gem/text"]["completion_tokens"] == sum(out)
    assert (by["claude-then-openai"]["requests"], by["claude-then-openai"]["errors"]) == (1, 0)


def test_openai_upstream_streamed_parallel_calls_arrive_whole(gw, sim):
    g = gclient(gw)
    tool = types.Tool(function_declarations=[types.FunctionDeclaration(
        name="get_weather", parameters_json_schema={"type": "object", "properties": {"city": {"type": "string"}}})])
    chunks = list(g.models.generate_content_stream(
        model="sim/parallel", contents="Weather in Paris and Tokyo?",
        config=types.GenerateContentConfig(tools=[tool], tool_config=types.ToolConfig(
            function_calling_config=types.FunctionCallingConfig(mode="ANY")))))
    calls = [p.function_call for c in chunks if c.candidates and c.candidates[0].content
             for p in c.candidates[0].content.parts if p.function_call]
    assert len(calls) >= 2 and all(isinstance(c.args, dict) for c in calls)
    sent = sim.last()["body"]
    assert sent["tool_choice"] == "required" and sent["stream"] is True
    assert sent["tools"][0]["function"]["parameters"]["properties"]["city"]["type"] == "string"


def test_echo_and_count_and_embed_without_a_gemini_upstream(gw):
    g = gclient(gw)
    r = g.models.generate_content(model="echo/echo", contents="hello there")
    assert "hello there" in r.text
    n = g.models.count_tokens(model="echo/echo", contents="hello there, how are you today?")
    assert 5 <= n.total_tokens <= 12
    e = g.models.embed_content(model="echo/echo", contents=["a", "b", "c"])
    assert len(e.embeddings) == 3


def test_dropped_fields_are_named(gw):
    r = httpx.post(gw.url + "/v1beta/models/claude/text:generateContent", headers={"x-goog-api-key": gw.key},
                   json={"contents": [{"role": "user", "parts": [{"text": ASK}]}],
                         "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
                         "generationConfig": {"topK": 3, "maxOutputTokens": 50}}, timeout=10)
    assert r.status_code == 200, r.text
    assert set(r.headers["x-jusinfer-dropped-params"].split(", ")) == {"safetySettings", "generationConfig.topK"}


# --- the surface: keys, errors, models ----------------------------------------------------

def test_key_in_the_query_and_errors_in_googles_shape(gw):
    body = {"contents": [{"parts": [{"text": ASK}]}]}
    r = httpx.post(gw.url + f"/v1beta/models/echo/echo:generateContent?key={gw.key}", json=body, timeout=10)
    assert r.status_code == 200 and r.json()["candidates"][0]["content"]["parts"][0]["text"]
    r = httpx.post(gw.url + "/v1beta/models/echo/echo:generateContent?key=jinf_nope", json=body, timeout=10)
    assert r.status_code == 401 and r.json()["error"]["status"] == "UNAUTHENTICATED"
    nope, g = gclient(gw, key="jinf_nope"), gclient(gw)
    with pytest.raises(errors.ClientError) as e:
        nope.models.generate_content(model="echo/echo", contents=ASK)
    assert e.value.code == 401
    with pytest.raises(errors.ClientError) as e:
        g.models.generate_content(model="no-such-model", contents=ASK)
    assert e.value.code == 404 and e.value.status == "NOT_FOUND"
    r = httpx.post(gw.url + "/v1beta/models/echo/echo:streamGenerateContent", json=body,
                   headers={"x-goog-api-key": gw.key}, timeout=10)
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"
    r = httpx.post(gw.url + "/v1beta/models/echo/echo:generateContent", json={"contents": []},
                   headers={"x-goog-api-key": gw.key}, timeout=10)
    assert r.status_code == 400 and "contents" in r.json()["error"]["message"]
    # The upstream's errors too: Google's RESOURCE_EXHAUSTED with Retry-After.
    r = httpx.post(gw.url + "/v1beta/models/gem/err429:generateContent", json=body,
                   headers={"x-goog-api-key": gw.key}, timeout=10)
    assert r.status_code == 429 and r.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert r.headers["retry-after"] == "35"


def test_models_list_in_googles_shape(gw):
    g = gclient(gw, version="v1beta")
    names = [m.name for m in g.models.list()]
    assert "models/claude-sonnet-4-5" in names
    m = g.models.get(model="claude-sonnet-4-5")
    assert m.name == "models/claude-sonnet-4-5" and "generateContent" in m.supported_actions
