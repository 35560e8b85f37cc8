"""Azure OpenAI natively: the official OpenAI SDK (Chat, Responses, embeddings) and the
Anthropic SDK (Messages) through the gateway to an Azure-shaped simulator replaying the
recorded Azure traffic (`fixtures/azure/`). The OpenAI SDK's own `AzureOpenAI` client, pointed
straight at the simulator, is the referee of the URL, `api-version` and `api-key` the gateway
sends."""

import json
import os
import subprocess

import anthropic
import httpx
import openai
import pytest

from conftest import BIN, FIXTURES, SIM_PROVIDER_KEY, start_gateway

AZ = FIXTURES / "azure"
MSG = [{"role": "user", "content": "What is 4200 + 42?"}]
SECRET_TOOL = {"type": "function", "function": {
    "name": "secret_retrieval_tool", "description": "A tool that requires a password to retrieve a secret.",
    "parameters": {"type": "object", "properties": {"password": {"type": "string"}}, "required": ["password"]}}}
VERSION = "2024-10-21"


def exchange(name, turn=0):
    v = json.loads((AZ / name).read_text())
    t = v[turn] if isinstance(v, list) else v
    body = t["response"]["body"]
    return t["request"]["body"], json.loads(body) if isinstance(body, str) else body


def recorded_text(name):
    text = ""
    for line in (AZ / name).read_text().split("\n"):
        if line.startswith("data: {"):
            for c in json.loads(line[6:])["choices"]:
                text += (c.get("delta") or {}).get("content") or ""
    return text


def raw_stream(gw, body):
    """The SSE frames the gateway sends, as parsed JSON (`[DONE]` last)."""
    with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, timeout=30,
                      headers={"authorization": f"Bearer {gw.key}"}) as r:
        assert r.status_code == 200, r.read()
        frames = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    return [json.loads(f) for f in frames[:-1]]


def sent_by(sim, call):
    """`call`'s result and what it made the simulator receive (path with query, headers, body)."""
    sim.clear()
    out = call()
    return out, sim.last()


def referee(sim, deployment, **kw):
    """The request Azure's own client (the OpenAI SDK's `AzureOpenAI`) sends for `deployment`."""
    az = openai.AzureOpenAI(azure_endpoint=sim.url, api_key=SIM_PROVIDER_KEY, api_version=VERSION, max_retries=0)
    return sent_by(sim, lambda: az.chat.completions.create(model=deployment, messages=MSG, **kw))[1]


def test_chat_reaches_the_deployment_the_model_maps_to(gw, client, sim):
    _, want = exchange("azure_chat_nonstream_text.exchange.json")
    r, sent = sent_by(sim, lambda: client.chat.completions.create(model="az/gpt-4o-mini", messages=MSG))
    assert r.choices[0].message.content == want["choices"][0]["message"]["content"]
    assert r.choices[0].finish_reason == "stop"
    # Unknown fields of a same-dialect upstream reach Chat clients (SPEC §4).
    assert r.choices[0].model_extra["content_filter_results"]["hate"]["severity"] == "safe"
    # Priced as the model the deployment serves (gpt-4o-mini: $0.15 / $0.60 per million).
    u = want["usage"]
    assert r.usage.model_extra["cost"] == pytest.approx(
        (u["prompt_tokens"] * 0.15 + u["completion_tokens"] * 0.6) / 1e6, rel=1e-6)
    ref = referee(sim, "azure-text")
    assert sent["path"] == ref["path"] == f"/openai/deployments/azure-text/chat/completions?api-version={VERSION}"
    assert sent["headers"]["api-key"] == ref["headers"]["api-key"] == SIM_PROVIDER_KEY
    assert "authorization" not in sent["headers"]
    assert sent["body"]["messages"] == MSG


def test_streams_never_show_the_prompt_filter_chunk(gw, sim):
    for case, fixture in [("azure-text", "azure_chat_stream_text.sse"),
                          ("azure-nodelta", "azure_chat_stream_chunk_without_delta.sse"),
                          ("azure-latency", "azure_chat_stream_usage_latency_checkpoint.sse")]:
        chunks = raw_stream(gw, {"model": f"az/{case}", "messages": MSG, "stream": True,
                                 "stream_options": {"include_usage": True}})
        assert all("prompt_filter_results" not in c for c in chunks), case
        assert all(c["choices"] or c.get("usage") for c in chunks), case
        assert all("delta" in ch for c in chunks for ch in c["choices"]), case
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant", case
        text = "".join(ch["delta"].get("content") or "" for c in chunks for ch in c["choices"])
        assert text == recorded_text(fixture), case
        assert [ch["finish_reason"] for c in chunks for ch in c["choices"] if ch["finish_reason"]] == ["stop"], case
    # The recorded usage chunk (and Azure's latency report beside it) reaches the client.
    assert chunks[-1]["usage"]["total_tokens"] == 36
    assert "latency_checkpoint" in chunks[-1]


def test_the_sdk_streams_text_and_usage_over_the_v1_route(gw, client, sim):
    sim.clear()
    stream = client.chat.completions.create(model="azv1/gpt-4o-mini", messages=MSG, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == recorded_text("azure_v1_chat_stream_include_usage.sse")
    assert chunks[-1].usage.total_tokens == 27
    sent = sim.last()
    assert sent["path"] == "/openai/v1/chat/completions"
    # The v1 route names the deployment in the body.
    assert sent["body"]["model"] == "azure-usage"
    assert sent["headers"]["api-key"] == SIM_PROVIDER_KEY
    # The OpenAI SDK pointed at the v1 route itself (Azure's documented client) sends the same path.
    direct = openai.OpenAI(base_url=sim.url + "/openai/v1/", api_key=SIM_PROVIDER_KEY, max_retries=0)
    _, ref = sent_by(sim, lambda: list(direct.chat.completions.create(model="azure-usage", messages=MSG, stream=True)))
    assert ref["path"] == sent["path"]


def test_parallel_tool_calls_round_trip(gw, client, sim):
    req, want = exchange("azure_chat_nonstream_parallel_tool_calls_roundtrip.exchange.json")
    msgs = req["messages"]
    r = client.chat.completions.create(model="az/gpt-4o-mini-tools", messages=msgs, tools=[SECRET_TOOL])
    calls = r.choices[0].message.tool_calls
    assert r.choices[0].finish_reason == "tool_calls"
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
        for c in want["choices"][0]["message"]["tool_calls"]]
    history = msgs + [r.choices[0].message.model_dump(exclude_none=True)] + [
        {"role": "tool", "tool_call_id": c.id, "content": s}
        for c, s in zip(calls, ["Welcome to Moria!", "Life before Death"])]
    sim.clear()
    final = client.chat.completions.create(model="az/gpt-4o-mini-tools", messages=history, tools=[SECRET_TOOL])
    assert "Moria" in final.choices[0].message.content
    sent = sim.last()
    assert sent["path"].startswith("/openai/deployments/azure-tools/chat/completions?")
    assert [m["tool_call_id"] for m in sent["body"]["messages"] if m["role"] == "tool"] == [c.id for c in calls]

    # Streamed: the SDK's own accumulator rebuilds both calls.
    with client.chat.completions.stream(model="az/gpt-4o-mini-tools", messages=msgs, tools=[SECRET_TOOL]) as s:
        done = s.get_final_completion()
    got = [(c.function.name, json.loads(c.function.arguments)) for c in done.choices[0].message.tool_calls]
    assert got == [("secret_retrieval_tool", {"password": "mellon"}), ("secret_retrieval_tool", {"password": "radiance"})]
    assert done.choices[0].finish_reason == "tool_calls"


def test_length_and_reasoning_models(client):
    r = client.chat.completions.create(model="az/azure-length", messages=MSG, max_tokens=5)
    assert r.choices[0].finish_reason == "length"
    chunks = list(client.chat.completions.create(model="az/azure-length", messages=MSG, stream=True))
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
    _, want = exchange("azure_chat_nonstream_reasoning_model.exchange.json")
    r = client.chat.completions.create(model="az/azure-reasoning", messages=[{"role": "user", "content": "Hello!"}])
    assert r.choices[0].message.content == want["choices"][0]["message"]["content"]
    assert r.usage.completion_tokens_details.reasoning_tokens == \
        want["usage"]["completion_tokens_details"]["reasoning_tokens"]


def test_messages_clients_reach_azure_with_streamed_tool_use(gw, sim):
    a = anthropic.Anthropic(base_url=gw.url, api_key=gw.key, max_retries=0)
    tool = {"name": "secret_retrieval_tool", "description": "A tool that requires a password.",
            "input_schema": SECRET_TOOL["function"]["parameters"]}
    ask = [{"role": "user", "content": "Please retrieve the secrets associated with each of these passwords: mellon,radiance"}]
    with a.messages.stream(model="az/gpt-4o-mini-tools", max_tokens=256, messages=ask, tools=[tool]) as s:
        m = s.get_final_message()
    assert m.stop_reason == "tool_use"
    uses = [b for b in m.content if b.type == "tool_use"]
    assert [u.input for u in uses] == [{"password": "mellon"}, {"password": "radiance"}]
    sent = sim.last()
    assert sent["path"].startswith("/openai/deployments/azure-tools/chat/completions?api-version=")
    assert sent["body"]["tools"][0]["function"]["name"] == "secret_retrieval_tool"

    m = a.messages.create(model="az/gpt-4o-mini", max_tokens=64, messages=MSG)
    assert m.content[0].text == "4200 + 42 equals 4242."
    assert m.stop_reason == "end_turn" and m.usage.output_tokens > 0


def test_responses_reach_azure_responses_route(gw, client, sim):
    sim.clear()
    r = client.responses.create(model="az/text", input="Say hello")
    assert r.output_text
    sent = sim.last()
    # Always the v1 route (the dated one serves Responses only from 2025-03-01-preview).
    assert sent["path"] == "/openai/v1/responses"
    assert sent["body"]["model"] == "text" and sent["headers"]["api-key"] == SIM_PROVIDER_KEY
    sim.clear()
    with client.responses.stream(model="azv1/text", input="Say hello") as s:
        done = s.get_final_response()
    assert done.output_text
    assert sim.last()["path"] == "/openai/v1/responses"


def test_embeddings_through_the_deployment(client, sim):
    sim.clear()
    r = client.embeddings.create(model="az/text-embedding-3-small", input=["a", "bb"])
    assert len(r.data) == 2 and len(r.data[0].embedding) == 8
    sent = sim.last()
    assert sent["path"] == f"/openai/deployments/embed-small/embeddings?api-version={VERSION}"
    assert sent["headers"]["api-key"] == SIM_PROVIDER_KEY


def test_a_filtered_prompt_is_a_clear_400_in_every_dialect(gw, client):
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model="az/azure-filter", messages=MSG, stream=stream)
        body = e.value.body
        assert body["code"] == "content_filter", body
        assert "self_harm (medium)" in body["message"] and "content management policy" in body["message"]
    a = anthropic.Anthropic(base_url=gw.url, api_key=gw.key, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as e:
        a.messages.create(model="az/azure-filter", max_tokens=64, messages=MSG)
    assert e.value.body["error"]["type"] == "invalid_request_error"
    assert "self_harm (medium)" in e.value.body["error"]["message"]
    r = httpx.post(gw.url + "/v1beta/models/az/azure-filter:generateContent", timeout=30,
                   headers={"x-goog-api-key": gw.key},
                   json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT", r.text
    assert "self_harm (medium)" in r.json()["error"]["message"]
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="az/azure-filter", input="x")
    assert e.value.body["code"] == "content_filter"


def test_a_deployment_azure_does_not_have_is_a_404(client):
    for model in ["az/azure-no-such-deployment", "azv1/azure-unknown"]:
        with pytest.raises(openai.NotFoundError) as e:
            client.chat.completions.create(model=model, messages=MSG)
        assert e.value.body["code"] == "model_not_found", e.value.body
        assert model.split("/")[0] in e.value.body["message"]


def test_a_key_azure_rejects_is_a_502_and_never_logged(sim, tmp_path):
    g = start_gateway(sim.url, tmp_path, extra=f'''
[providers.azbad]
kind = "azure"
base_url = "{sim.url}/openai"
api_key = "sk-jusinfer-check-invalid-key-0000000000"
api_version = "{VERSION}"
''')
    try:
        c = g.client()
        with pytest.raises(openai.InternalServerError) as e:
            c.chat.completions.create(model="azbad/azure-text", messages=MSG)
        assert e.value.status_code == 502
        assert e.value.body["code"] == "upstream_auth_error"
        assert "subscription key" in e.value.body["message"]
    finally:
        g.proc.stop()
    assert "sk-jusinfer-check-invalid-key-0000000000" not in g.proc.stderr()


@pytest.mark.parametrize("body,needle", [
    ('kind = "azure"\napi_key = "k"', "needs base_url"),
    ('kind = "azure"\nbase_url = "https://r.openai.azure.com"\napi_version = "2024-10-21&x=1"', "api_version"),
    ('kind = "azure"\nbase_url = "https://r.openai.azure.com"\ndeployments = { "gpt-4o" = "../x" }', "deployment name"),
    ('kind = "openai"\napi_version = "2024-10-21"', "Azure OpenAI setting"),
    ('kind = "openai"\nauth = "entra"', "Azure OpenAI setting"),
    ('kind = "azure"\nbase_url = "https://r.openai.azure.com"\nauth = "aad"', 'expected "api-key" or "entra"'),
    ('kind = "azure"\nbase_url = "https://r.openai.azure.com"\nauth = "entra"\napi_key = "k"', "choose one"),
    ('kind = "azure"\nbase_url = "https://r.openai.azure.com"\nauth = "entra"\nclient_secret = "s"', "needs tenant_id"),
])
def test_azure_config_mistakes_are_named(tmp_path, body, needle):
    cfg = tmp_path / "a.toml"
    cfg.write_text(f"[providers.a]\n{body}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
    r = subprocess.run([str(BIN), "config", "check", "--config", str(cfg)], capture_output=True, text=True,
                       timeout=30, env=env)
    assert r.returncode != 0 and needle in r.stderr and "a.toml:" in r.stderr, r.stderr


def entra_gateway(sim, tmp_path, identity_header):
    return start_gateway(sim.url, tmp_path, name="entra", env={
        "IDENTITY_ENDPOINT": sim.url + "/_azure/msi", "IDENTITY_HEADER": identity_header}, extra=f'''
[providers.azentra]
kind = "azure"
base_url = "{sim.url}"
auth = "entra"
api_version = "{VERSION}"

[providers.azuami]
kind = "azure"
base_url = "{sim.url}"
auth = "entra"
client_id = "11111111-2222-3333-4444-555555555555"
''')


def test_entra_tokens_from_the_managed_identity_fetched_once(sim, tmp_path):
    g = entra_gateway(sim, tmp_path, "sim-identity-header-secret")
    try:
        c = g.client()
        before = sim.stats()["token_requests"]
        sim.clear()
        assert c.chat.completions.create(model="azentra/azure-text", messages=MSG).choices[0].message.content
        assert "".join(ch.choices[0].delta.content or "" for ch in
                       c.chat.completions.create(model="azentra/azure-text", messages=MSG, stream=True)
                       if ch.choices) == recorded_text("azure_chat_stream_text.sse")
        assert len(c.embeddings.create(model="azentra/embed", input="x").data) == 1
        reqs = sim.requests()
        msi = [r for r in reqs if r["path"].startswith("/_azure/msi")]
        # One token, asked for the Cognitive Services audience, with the identity header.
        assert len(msi) == 1 and sim.stats()["token_requests"] == before + 1
        assert "resource=https%3A%2F%2Fcognitiveservices.azure.com" in msi[0]["path"]
        assert "api-version=2019-08-01" in msi[0]["path"]
        calls = [r for r in reqs if r["path"].startswith("/openai/")]
        assert len(calls) == 3
        for r in calls:
            assert r["headers"]["authorization"].startswith("Bearer sim-entra-"), r["headers"]
            assert "api-key" not in r["headers"]
        assert len({r["headers"]["authorization"] for r in calls}) == 1
        # A user-assigned identity is asked for by its client id.
        sim.clear()
        c.chat.completions.create(model="azuami/azure-text", messages=MSG)
        msi = [r for r in sim.requests() if r["path"].startswith("/_azure/msi")]
        assert len(msi) == 1 and "client_id=11111111-2222-3333-4444-555555555555" in msi[0]["path"]
    finally:
        g.proc.stop()
    assert "sim-entra-" not in g.proc.stderr() and "sim-identity-header-secret" not in g.proc.stderr()


def test_no_entra_token_is_a_502_naming_the_cause(sim, tmp_path):
    g = entra_gateway(sim, tmp_path, "a-wrong-secret")
    try:
        with pytest.raises(openai.InternalServerError) as e:
            g.client().chat.completions.create(model="azentra/azure-text", messages=MSG)
        assert e.value.status_code == 502 and e.value.body["code"] == "upstream_auth_error"
        assert "Microsoft Entra token" in e.value.body["message"] and "ManagedIdentityCredential" in e.value.body["message"]
        assert "a-wrong-secret" not in e.value.body["message"]
    finally:
        g.proc.stop()
