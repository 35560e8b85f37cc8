"""Gemini natively: the official OpenAI SDK (and the Anthropic SDK, through /v1/messages)
through the gateway to a Gemini-shaped simulator replaying the recorded Gemini traffic.
Google's own `google-genai` types are the referee of every request the gateway sends."""

import json

import anthropic
import httpx
import openai
import pytest
from google.genai import types

from conftest import FIXTURES, SIM_PROVIDER_KEY

GEM = FIXTURES / "gemini"
MSG = [{"role": "user", "content": "What is 4200 + 42?"}]
SECRET_TOOL = {"type": "function", "function": {
    "name": "secret_retrieval_tool", "description": "A tool that requires a password to retrieve a secret.",
    "parameters": {"type": "object", "properties": {"password": {"type": "string"}}, "required": ["password"]}}}
COUNTRY_TOOL = {"type": "function", "function": {
    "name": "get_country", "description": "", "parameters": {"type": "object", "properties": {}}}}


def exchange(name, turn=0):
    v = json.loads((GEM / name).read_text())
    t = v[turn] if isinstance(v, list) else v
    body = t["response"]["body"]
    return t["request"]["body"], json.loads(body) if isinstance(body, str) else body


def sse_events(name):
    text = (GEM / name).read_text().replace("\r\n", "\n")
    return [json.loads(line[6:]) for line in text.split("\n") if line.startswith("data: ")]


def refereed(sent):
    """The request the gateway sent, checked by google-genai's own (extra-forbidding) types."""
    body = sent["body"]
    assert set(body) <= {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig"}, body.keys()
    contents = [types.Content.model_validate(c) for c in body["contents"]]
    if "systemInstruction" in body:
        types.Content.model_validate(body["systemInstruction"])
    for t in body.get("tools", []):
        types.Tool.model_validate(t)
    if "toolConfig" in body:
        types.ToolConfig.model_validate(body["toolConfig"])
    if "generationConfig" in body:
        types.GenerationConfig.model_validate(body["generationConfig"])
    assert sent["headers"]["x-goog-api-key"] == SIM_PROVIDER_KEY and "authorization" not in sent["headers"]
    return body, contents


def test_text_non_streaming(client, sim):
    sim.clear()
    _, want = exchange("gemini_nonstream_text.exchange.json")
    raw = client.chat.completions.with_raw_response.create(
        model="gem/text", messages=[{"role": "system", "content": "Be kind."}, *MSG], max_tokens=300)
    c = raw.parse()
    assert c.choices[0].message.content == want["candidates"][0]["content"]["parts"][0]["text"]
    assert c.choices[0].finish_reason == "stop"
    assert c.object == "chat.completion" and c.model == "gemini-2.5-flash"
    # Thoughts count as completion tokens and show as reasoning tokens.
    assert (c.usage.prompt_tokens, c.usage.completion_tokens, c.usage.total_tokens) == (13, 102, 115)
    assert c.usage.completion_tokens_details.reasoning_tokens == 25
    assert raw.headers["x-jusinfer-provider"] == "gem"
    sent = sim.last()
    assert sent["path"] == "/v1beta/models/text:generateContent"
    body, contents = refereed(sent)
    assert body["systemInstruction"] == {"parts": [{"text": "Be kind."}]}
    assert [(c.role, c.parts[0].text) for c in contents] == [("user", MSG[0]["content"])]
    assert body["generationConfig"] == {"maxOutputTokens": 300}


def test_text_streaming_with_usage(client, sim):
    sim.clear()
    events = sse_events("gemini_stream_text.sse")
    chunks = list(client.chat.completions.create(model="gem/text", messages=MSG, stream=True,
                                                 stream_options={"include_usage": True}))
    assert sim.last()["path"] == "/v1beta/models/text:streamGenerateContent?alt=sse"
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "".join(p["text"] for e in events for p in e["candidates"][0]["content"]["parts"])
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    # The last usageMetadata (cumulative), as the usage chunk.
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == events[-1]["usageMetadata"]["totalTokenCount"]


def test_parallel_tool_calls_round_trip_with_the_thought_signature(client, sim):
    """Turn 1's calls come back with ids the client keeps; turn 2 sends them back and the
    gateway restores Gemini's thoughtSignature on the same part, byte for byte."""
    sim.clear()
    _, turn1 = exchange("gemini_nonstream_parallel_function_calls_roundtrip.exchange.json", 0)
    msgs = [{"role": "system", "content": "Use parallel tool calling."},
            {"role": "user", "content": "Please retrieve the secrets associated with each of these passwords: mellon,radiance"}]
    c = client.chat.completions.create(model="gem/parallel", messages=msgs, tools=[SECRET_TOOL])
    m = c.choices[0].message
    assert c.choices[0].finish_reason == "tool_calls"
    parts = turn1["candidates"][0]["content"]["parts"]
    assert [(t.function.name, json.loads(t.function.arguments)) for t in m.tool_calls] == \
        [(p["functionCall"]["name"], p["functionCall"]["args"]) for p in parts]
    assert len({t.id for t in m.tool_calls}) == 2
    refereed(sim.last())
    msgs.append(m.model_dump(exclude_none=True))
    for t in m.tool_calls:
        msgs.append({"role": "tool", "tool_call_id": t.id, "content": json.dumps({"secret": t.function.arguments})})
    c2 = client.chat.completions.create(model="gem/parallel", messages=msgs, tools=[SECRET_TOOL])
    _, turn2 = exchange("gemini_nonstream_parallel_function_calls_roundtrip.exchange.json", 1)
    assert c2.choices[0].message.content == turn2["candidates"][0]["content"]["parts"][0]["text"]
    body, contents = refereed(sim.last())
    assert [c.role for c in contents] == ["user", "model", "user"]
    model_parts = body["contents"][1]["parts"]
    assert [p.get("thoughtSignature") for p in model_parts] == [p.get("thoughtSignature") for p in parts]
    results = body["contents"][2]["parts"]
    assert [r["functionResponse"]["name"] for r in results] == ["secret_retrieval_tool"] * 2
    assert [r["functionResponse"]["id"] for r in results] == [p["functionCall"]["id"] for p in model_parts]


def test_a_conversation_moving_from_gemini_to_openai_sends_plain_call_ids(client, sim):
    """Ids minted for Gemini carry its signatures; an OpenAI-shaped upstream (which caps
    ids at 40 characters) gets them without, still paired."""
    msgs = [{"role": "system", "content": "Use parallel tool calling."},
            {"role": "user", "content": "Please retrieve the secrets associated with each of these passwords: mellon,radiance"}]
    m = client.chat.completions.create(model="gem/parallel", messages=msgs, tools=[SECRET_TOOL]).choices[0].message
    assert any("__thought__" in t.id and len(t.id) > 40 for t in m.tool_calls)
    msgs.append(m.model_dump(exclude_none=True))
    for t in m.tool_calls:
        msgs.append({"role": "tool", "tool_call_id": t.id, "content": "s3cret"})
    sim.clear()
    client.chat.completions.create(model="sim/text", messages=msgs, tools=[SECRET_TOOL])
    sent = sim.last()["body"]["messages"]
    ids = [c["id"] for c in sent[2]["tool_calls"]]
    assert ids == [t.id.split("__thought__")[0] for t in m.tool_calls]
    assert all(len(i) <= 40 for i in ids)
    assert [x["tool_call_id"] for x in sent[3:]] == ids


def test_streamed_call_of_a_thinking_model_keeps_its_signature_across_turns(client, sim):
    """gemini-3 refuses a turn whose call lost its thoughtSignature (the simulator does too)."""
    sim.clear()
    msgs = [{"role": "user", "content": "What is the capital of the user country? Call the tool"}]
    with client.chat.completions.stream(model="gem/thinking-sig", messages=msgs, tools=[COUNTRY_TOOL]) as s:
        final = s.get_final_completion()
    m = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    assert [t.function.name for t in m.tool_calls] == ["get_country"]
    msgs.append(m.model_dump(exclude_none=True))
    msgs.append({"role": "tool", "tool_call_id": m.tool_calls[0].id, "content": "Mexico"})
    chunks = list(client.chat.completions.create(model="gem/thinking-sig", messages=msgs, tools=[COUNTRY_TOOL],
                                                 stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Mexico City" in text
    body, _ = refereed(sim.last())
    assert body["contents"][2]["parts"][0]["functionResponse"]["response"] == {"result": "Mexico"}
    # Without the signature the turn is refused: the id is what carries it.
    msgs[1]["tool_calls"][0]["id"] = "call_plain"
    msgs[2]["tool_call_id"] = "call_plain"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gem/thinking-sig", messages=msgs, tools=[COUNTRY_TOOL])
    assert "thought_signature" in str(e.value)


def test_thought_summaries_stream_as_reasoning_content(client):
    events = sse_events("gemini_stream_thinking_thought_summaries.sse")
    chunks = list(client.chat.completions.create(model="gem/thoughts", messages=MSG, stream=True,
                                                 reasoning_effort="low"))
    reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
    want = "".join(p["text"] for e in events for p in e["candidates"][0]["content"]["parts"] if p.get("thought"))
    assert reasoning == want and want


def test_finish_reasons_and_cached_usage(client):
    c = client.chat.completions.create(model="gem/length", messages=MSG)
    assert c.choices[0].finish_reason == "length"
    c = client.chat.completions.create(model="gem/safety", messages=MSG)
    assert c.choices[0].finish_reason == "content_filter"
    raw = client.chat.completions.with_raw_response.create(model="gem/cache", messages=MSG)
    c = raw.parse()
    _, want = exchange("gemini_nonstream_usage_cached_content_tokens.exchange.json")
    u = want["usageMetadata"]
    assert c.usage.prompt_tokens == u["promptTokenCount"]
    assert c.usage.prompt_tokens_details.cached_tokens == u["cachedContentTokenCount"]
    # Cached tokens at the cached rate (gem/cache: 0.3 / 0.03 / 2.5 per million).
    out = u.get("candidatesTokenCount", 0) + u.get("thoughtsTokenCount", 0)
    cost = ((u["promptTokenCount"] - u["cachedContentTokenCount"]) * 0.3
            + u["cachedContentTokenCount"] * 0.03 + out * 2.5) / 1e6
    assert c.usage.model_extra["cost"] == pytest.approx(cost, rel=1e-6)


def test_a_blocked_prompt_is_a_clear_400(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gem/blocked", messages=MSG)
    assert e.value.code == "content_filter" and "blocked" in str(e.value)


def test_google_errors_map_to_the_clients_shape(gw, client):
    # The gateway's key refused: not the client's fault, a 502.
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="gem/err400-key", messages=MSG)
    assert e.value.status_code == 502 and e.value.code == "upstream_auth_error"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gem/err404", messages=MSG)
    # Quota: 429 with RetryInfo's 34.4 s as Retry-After.
    r = httpx.post(gw.url + "/v1/chat/completions", headers={"authorization": f"Bearer {gw.key}"},
                   json={"model": "gem/err429", "messages": MSG}, timeout=10)
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limit_exceeded"
    assert r.headers["retry-after"] == "35"
    # In Anthropic's shape on /v1/messages.
    a = anthropic.Anthropic(base_url=gw.url, api_key=gw.key, max_retries=0)
    with pytest.raises(anthropic.NotFoundError) as e:
        a.messages.create(model="gem/err404", max_tokens=10, messages=MSG)
    assert e.value.body["type"] == "error"


def test_messages_and_responses_clients_reach_gemini(gw, sim):
    a = anthropic.Anthropic(base_url=gw.url, api_key=gw.key, max_retries=0)
    m = a.messages.create(model="gem/text", max_tokens=300, messages=MSG)
    _, want = exchange("gemini_nonstream_text.exchange.json")
    assert m.content[0].text == want["candidates"][0]["content"]["parts"][0]["text"]
    assert m.stop_reason == "end_turn"
    refereed(sim.last())
    with a.messages.stream(model="gem/parallel", max_tokens=300, messages=MSG,
                           tools=[{"name": "secret_retrieval_tool", "input_schema": {"type": "object"}}]) as s:
        final = s.get_final_message()
    assert final.stop_reason == "tool_use"
    assert [b.name for b in final.content if b.type == "tool_use"] == ["secret_retrieval_tool"] * 2
    r = gw.client().responses.create(model="gem/text", input="What is 4200 + 42?")
    assert r.output_text == want["candidates"][0]["content"]["parts"][0]["text"]
    assert r.usage.output_tokens_details.reasoning_tokens == 25


def test_a_model_name_cannot_change_the_upstream_path(client, sim):
    sim.clear()
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model="gem/../x?alt=json#", messages=MSG)
    sent = sim.last()
    assert sent["path"].startswith("/v1beta/models/..%2Fx%3Falt=json%23:generateContent")


# ---- Vertex AI: OAuth2 service account, Gemini and Anthropic publisher models ----

VERTEX = "/v1/projects/sim-project/locations/us-east5/publishers"


def test_vertex_gemini_with_a_service_account_token_fetched_once(gw, client, sim):
    sim.clear()
    before = httpx.get(sim.url + "/_sim/stats").json()["token_requests"]
    _, want = exchange("gemini_nonstream_text.exchange.json")
    for _ in range(5):
        c = client.chat.completions.create(model="vtx/text", messages=MSG)
        assert c.choices[0].message.content == want["candidates"][0]["content"]["parts"][0]["text"]
    # One token, cached for its hour.
    assert httpx.get(sim.url + "/_sim/stats").json()["token_requests"] - before <= 1
    sent = sim.last()
    assert sent["path"] == VERTEX + "/google/models/text:generateContent"
    assert sent["headers"]["authorization"].startswith("Bearer ya29.sim-")
    assert "x-goog-api-key" not in sent["headers"]
    body = sent["body"]
    assert set(body) <= {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig"}
    [types.Content.model_validate(c) for c in body["contents"]]
    # Never logged.
    assert "ya29." not in gw.proc.stderr()


def test_vertex_gemini_streamed_calls_finish_with_tool_calls(client, sim):
    chunks = list(client.chat.completions.create(model="vtx/parallel", messages=MSG, tools=[SECRET_TOOL],
                                                 stream=True))
    assert sim.last()["path"] == VERTEX + "/google/models/parallel:streamGenerateContent?alt=sse"
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    # What Gemini's OpenAI-compatible endpoint gets wrong (it says `stop`).
    assert finish == ["tool_calls"]


def test_claude_on_vertex_from_chat_and_from_messages(gw, client, sim):
    ant = json.loads((FIXTURES / "anthropic/anthropic_nonstream_text.json").read_text())
    c = client.chat.completions.create(model="vtx/claude-text", messages=MSG)
    assert c.choices[0].message.content == ant["content"][0]["text"]
    sent = sim.requests()[-1]
    assert sent["path"] == VERTEX + "/anthropic/models/claude-text:rawPredict"
    assert "model" not in sent["body"] and sent["body"]["anthropic_version"] == "vertex-2023-10-16"
    assert sent["body"]["max_tokens"] == 1024
    chunks = list(client.chat.completions.create(model="vtx/claude-text", messages=MSG, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ant["content"][0]["text"]
    assert sim.requests()[-1]["path"] == VERTEX + "/anthropic/models/claude-text:streamRawPredict"
    # Anthropic's SDK natively: its body, model swapped for the version field.
    a = anthropic.Anthropic(base_url=gw.url, api_key=gw.key, max_retries=0)
    with a.messages.stream(model="vtx/claude-weather", max_tokens=200, messages=MSG,
                           tools=[{"name": "get_weather", "input_schema": {"type": "object"}}]) as s:
        final = s.get_final_message()
    assert final.stop_reason == "tool_use"
    sent = sim.requests()[-1]
    assert sent["path"] == VERTEX + "/anthropic/models/claude-weather:streamRawPredict"
    assert "model" not in sent["body"] and sent["body"]["anthropic_version"] == "vertex-2023-10-16"
    assert sent["body"]["max_tokens"] == 200 and sent["body"]["stream"] is True


def test_vertex_with_a_key_google_does_not_know_is_a_502_naming_the_cause(sim, tmp_path):
    from conftest import start_gateway
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    sa = tmp_path / "other.json"
    sa.write_text(json.dumps({"type": "service_account", "project_id": "p", "private_key_id": "k",
                              "private_key": other, "client_email": "x@p.iam.gserviceaccount.com",
                              "client_id": "1", "token_uri": sim.url + "/token"}))
    g = start_gateway(sim.url, tmp_path, extra=f'''
[providers.vbad]
kind = "vertex"
base_url = "{sim.url}/v1"
project = "p"
credentials_file = "{sa}"
''')
    try:
        with pytest.raises(openai.APIStatusError) as e:
            g.client().chat.completions.create(model="vbad/text", messages=MSG)
        assert e.value.status_code == 502 and e.value.code == "upstream_auth_error"
        assert "access token" in str(e.value)
        assert other.splitlines()[1] not in g.proc.stderr()
    finally:
        g.proc.stop()


def test_vertex_config_needs_a_project(tmp_path):
    from conftest import BIN
    cfg = tmp_path / "v.toml"
    cfg.write_text('[providers.v]\nkind = "vertex"\n')
    import subprocess
    r = subprocess.run([str(BIN), "config", "check", "--config", str(cfg)], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "needs project" in r.stderr and "v.toml:" in r.stderr


def test_embeddings_through_batch_embed_contents(client, sim):
    rec = json.loads((GEM / "gemini_batch_embed_contents.exchange.json").read_text())
    rec = rec[0] if isinstance(rec, list) else rec
    body = rec["response"]["body"]
    values = (json.loads(body) if isinstance(body, str) else body)["embeddings"][0]["values"]
    # The SDK's default: base64 floats, decoded by the SDK.
    e = client.embeddings.create(model="gem/gemini-embedding-001", input=["Hello, world!", "again"], dimensions=8)
    assert [d.index for d in e.data] == [0, 1]
    assert e.data[0].embedding == pytest.approx(values[:8], rel=1e-6)
    assert e.usage.prompt_tokens > 0 and e.model == "gemini-embedding-001"
    sent = sim.last()
    assert sent["path"] == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    reqs = sent["body"]["requests"]
    assert [r["model"] for r in reqs] == ["models/gemini-embedding-001"] * 2
    assert [r["outputDimensionality"] for r in reqs] == [8, 8]
    assert [types.Content.model_validate(r["content"]).parts[0].text for r in reqs] == ["Hello, world!", "again"]
    f = client.embeddings.create(model="gem/gemini-embedding-001", input="x", encoding_format="float")
    assert f.data[0].embedding == values
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model="gem/gemini-embedding-001", input=[[1, 2, 3]])
    assert err.value.body["param"] == "input"
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="gem/err404", input="x")
    # More than a batch takes (100): batches, the vectors in order.
    sim.clear()
    e = client.embeddings.create(model="gem/gemini-embedding-001", input=[f"t{i}" for i in range(150)],
                                 encoding_format="float")
    assert len(e.data) == 150 and [d.index for d in e.data] == list(range(150))
    batches = [r["body"]["requests"] for r in sim.requests() if r["path"].endswith(":batchEmbedContents")]
    assert sorted(len(b) for b in batches) == [50, 100]
    assert [q["content"]["parts"][0]["text"] for b in sorted(batches, key=len, reverse=True) for q in b] == \
        [f"t{i}" for i in range(150)]
    # A bound on what one request can fan out to.
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model="gem/gemini-embedding-001", input=["x"] * 2049)
    assert err.value.code == "too_many_inputs"


def test_vertex_embeddings_through_predict(client, sim):
    rec = json.loads((FIXTURES / "vertex" / "vertex_predict_embeddings.exchange.json").read_text())
    rec = rec[0] if isinstance(rec, list) else rec
    values = rec["response"]["body"]["predictions"][0]["embeddings"]["values"]
    sim.clear()
    # text-embedding-*: every input in one call; Vertex counts the tokens.
    e = client.embeddings.create(model="vtx/text-embedding-005", input=["Hello, world!", "a b c"], dimensions=8)
    assert [d.index for d in e.data] == [0, 1]
    assert e.data[1].embedding == pytest.approx(values[:8], rel=1e-6)
    assert e.usage.prompt_tokens == (2 + 2) + (3 + 2)  # the simulator's token_count per instance
    calls = [r for r in sim.requests() if r["path"].endswith(":predict")]
    assert [c["path"] for c in calls] == [
        "/v1/projects/sim-project/locations/us-east5/publishers/google/models/text-embedding-005:predict"]
    assert calls[0]["body"] == {"instances": [{"content": "Hello, world!"}, {"content": "a b c"}],
                                "parameters": {"outputDimensionality": 8}}
    assert calls[0]["headers"]["authorization"].startswith("Bearer ")
    # gemini-embedding-*: one instance per call (Vertex refuses more), the answers in order.
    sim.clear()
    inputs = [f"input {i}" for i in range(11)]
    e = client.embeddings.create(model="vtx/gemini-embedding-001", input=inputs, encoding_format="float")
    assert len(e.data) == 11 and e.data[10].embedding == values
    calls = [r for r in sim.requests() if r["path"].endswith(":predict")]
    assert sorted(c["body"]["instances"][0]["content"] for c in calls) == sorted(inputs)
    assert e.usage.prompt_tokens == 11 * (2 + 2)


def test_count_tokens_asks_gemini_with_the_translated_request(gw, sim):
    a = anthropic.Anthropic(base_url=gw.url, api_key=gw.key, max_retries=0)
    msgs = [{"role": "user", "content": "The quick brown fox jumps over the lazy dog."}]
    raw = a.messages.with_raw_response.count_tokens(model="gem/gemini-2.5-flash", messages=msgs)
    assert raw.headers["x-jusinfer-token-count"] == "upstream"
    assert raw.parse().input_tokens == 9
    sent = sim.last()
    assert sent["path"] == "/v1beta/models/gemini-2.5-flash:countTokens"
    inner = sent["body"]["generateContentRequest"]
    assert inner["model"] == "models/gemini-2.5-flash"
    [types.Content.model_validate(c) for c in inner["contents"]]
    # The system prompt and the tools count too.
    n = a.messages.count_tokens(model="gem/gemini-2.5-flash", messages=msgs, system="Be brief.",
                                tools=[{"name": "f", "description": "looks things up", "input_schema": {"type": "object"}}])
    assert n.input_tokens == 9 + 2 + 3
    # Vertex's Gemini models take the request's fields at the top level.
    v = a.messages.count_tokens(model="vtx/gemini-2.5-flash", messages=msgs)
    assert v.input_tokens == 9
    assert sim.last()["path"] == VERTEX + "/google/models/gemini-2.5-flash:countTokens"
    assert "contents" in sim.last()["body"]
