"""Amazon Bedrock natively (Converse): the official OpenAI SDK (Chat, Responses) and the
Anthropic SDK (Messages) through the gateway to a Bedrock-shaped simulator replaying the
recorded Bedrock traffic (`fixtures/bedrock/`: JSON answers, binary event streams, errors).
AWS's own `botocore` is the referee of every request body the gateway sends: its
`bedrock-runtime` service model validates it as a Converse request."""

import base64
import json
import os
import subprocess

import anthropic
import botocore.session
import httpx
import botocore.validate
import openai
import pytest

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import BIN, FIXTURES, SIM_PROVIDER_KEY, start_gateway

BR = FIXTURES / "bedrock"
MSG = [{"role": "user", "content": "What is 4200 + 42?"}]
SECRET_TOOL = {"type": "function", "function": {
    "name": "secret_retrieval_tool", "description": "A tool that requires a password to retrieve a secret.",
    "parameters": {"type": "object", "properties": {"password": {"type": "string"}}, "required": ["password"]}}}

_MODEL = botocore.session.get_session().get_service_model("bedrock-runtime")


def refereed(sent, stream=False, bearer=True):
    """The request the gateway sent, checked by botocore's Converse input shape."""
    op = _MODEL.operation_model("ConverseStream" if stream else "Converse")
    model = sent["path"].split("/")[2]
    report = botocore.validate.ParamValidator().validate({"modelId": model, **sent["body"]}, op.input_shape)
    assert not report.has_errors(), report.generate_report()
    if bearer:
        assert sent["headers"]["authorization"] == f"Bearer {SIM_PROVIDER_KEY}"
    return sent["body"]


def exchange(name, turn=0):
    v = json.loads((BR / name).read_text())
    t = v[turn] if isinstance(v, list) else v
    body = t["response"]["body"]
    return t["request"]["body"], json.loads(body) if isinstance(body, str) else body


def events(stem):
    return json.loads((BR / f"{stem}.events.json").read_text())


def recorded_text(stem):
    return "".join(e["payload"].get("delta", {}).get("text", "") for e in events(stem)
                   if e["headers"][":event-type"] == "contentBlockDelta")


def recorded_usage(stem):
    return next(e["payload"]["usage"] for e in events(stem) if e["headers"][":event-type"] == "metadata")


def test_text_through_converse(gw, client, sim):
    _, want = exchange("bedrock_converse_nonstream_text.exchange.json")
    sim.clear()
    r = client.chat.completions.create(model="aws/amazon.nova-micro-v1:0", messages=MSG, max_tokens=300)
    assert r.choices[0].message.content == want["output"]["message"]["content"][0]["text"]
    assert r.choices[0].finish_reason == "stop"
    assert r.model == "amazon.nova-micro-v1:0"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (want["usage"]["inputTokens"], want["usage"]["outputTokens"])
    sent = sim.last()
    assert sent["path"] == "/model/amazon.nova-micro-v1:0/converse"
    body = refereed(sent)
    assert body == {"messages": [{"role": "user", "content": [{"text": "What is 4200 + 42?"}]}],
                    "inferenceConfig": {"maxTokens": 300}}


def test_the_sdk_streams_text_and_usage_from_the_binary_event_stream(client, sim):
    sim.clear()
    chunks = list(client.chat.completions.create(model="aws/amazon.nova-micro-v1:0", messages=MSG, stream=True,
                                                 stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == recorded_text("bedrock_converse_stream_text")
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    u = recorded_usage("bedrock_converse_stream_text")
    assert chunks[-1].usage.completion_tokens == u["outputTokens"]
    sent = sim.last()
    assert sent["path"] == "/model/amazon.nova-micro-v1:0/converse-stream"
    assert sent["headers"]["accept"] == "application/vnd.amazon.eventstream"
    refereed(sent, stream=True)


def test_parallel_tool_use_round_trip(client, sim):
    req, want = exchange("bedrock_converse_nonstream_parallel_tool_use_roundtrip.exchange.json")
    msgs = [{"role": "system", "content": "Use parallel tool calling."},
            {"role": "user", "content": req["messages"][0]["content"][0]["text"]}]
    r = client.chat.completions.create(model="aws/nova-tools", messages=msgs, tools=[SECRET_TOOL])
    calls = r.choices[0].message.tool_calls
    assert r.choices[0].finish_reason == "tool_calls"
    want_uses = [b["toolUse"] for b in want["output"]["message"]["content"] if "toolUse" in b]
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls] == \
        [(u["toolUseId"], u["name"], u["input"]) for u in want_uses]
    history = msgs + [r.choices[0].message.model_dump(exclude_none=True)] + [
        {"role": "tool", "tool_call_id": c.id, "content": s}
        for c, s in zip(calls, ["Welcome to Moria!", "Life before Death"])]
    sim.clear()
    final = client.chat.completions.create(model="aws/nova-tools", messages=history, tools=[SECRET_TOOL])
    assert "Moria" in final.choices[0].message.content
    body = refereed(sim.last())
    results = [b["toolResult"] for b in body["messages"][-1]["content"]]
    assert [x["toolUseId"] for x in results] == [c.id for c in calls]
    assert body["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"] == SECRET_TOOL["function"]["parameters"]

    # Streamed (Nova sends each call's input whole): the SDK's accumulator rebuilds both.
    with client.chat.completions.stream(model="aws/nova-tools", messages=msgs, tools=[SECRET_TOOL]) as s:
        done = s.get_final_completion()
    got = [(c.function.name, json.loads(c.function.arguments)) for c in done.choices[0].message.tool_calls]
    assert got == [("secret_retrieval_tool", {"password": "mellon"}), ("secret_retrieval_tool", {"password": "radiance"})]
    assert done.choices[0].finish_reason == "tool_calls"


def test_messages_clients_reach_other_bedrock_models_through_converse(gw, sim):
    a = anthropic.Anthropic(base_url=gw.url, api_key=gw.key, max_retries=0)
    tool = {"name": "fetch_concept", "description": "Fetch a concept.",
            "input_schema": {"type": "object", "properties": {"concept": {"type": "string"}}}}
    # Not a Claude id: the Messages request is translated to Converse and back.
    with a.messages.stream(model="aws/us.mistral.text-tool", max_tokens=256, tools=[tool],
                           messages=[{"role": "user", "content": "Explain distributed tracing"}]) as s:
        m = s.get_final_message()
    assert m.stop_reason == "tool_use"
    uses = [b for b in m.content if b.type == "tool_use"]
    assert len(uses) == 1 and uses[0].name == "fetch_concept"
    assert uses[0].input == {"concept": "distributed tracing"}
    text = "".join(b.text for b in m.content if b.type == "text")
    assert text == recorded_text("bedrock_converse_stream_text_then_tool_use")
    assert sim.last()["path"] == "/model/us.mistral.text-tool/converse-stream"
    refereed(sim.last(), stream=True)

    m = a.messages.create(model="aws/amazon.nova-micro-v1:0", max_tokens=64, messages=MSG)
    assert "4242" in m.content[0].text and m.stop_reason == "end_turn"


def sdk_prepared(model, body, headers=None):
    """What Anthropic's own Bedrock client (`AnthropicBedrock`) makes of a Messages call:
    its path and body (its `_prepare_options`, run without a network)."""
    from anthropic._models import FinalRequestOptions
    from anthropic.lib.bedrock._client import _prepare_options
    o = FinalRequestOptions.construct(method="post", url="/v1/messages", json_data={"model": model, **body},
                                      headers=headers or {})
    r = _prepare_options(o)
    return r.url, r.json_data


def invoke_refereed(sent, model, body, headers=None):
    """The InvokeModel request the gateway sent for a Messages `body`: the path Anthropic's
    Bedrock client would use, the body it would send (its `anthropic_version` aside: the
    recordings, made against Bedrock, carry `bedrock-2023-05-31`), valid for botocore."""
    path, want = sdk_prepared(model, body, headers)
    assert sent["path"] == path
    got = dict(sent["body"])
    assert got.pop("anthropic_version") == "bedrock-2023-05-31"
    want.pop("anthropic_version")
    assert got == want
    op = _MODEL.operation_model("InvokeModelWithResponseStream" if path.endswith("-stream") else "InvokeModel")
    raw = base64.b64decode(sent["headers"]["x-sim-raw-body"])
    report = botocore.validate.ParamValidator().validate(
        {"modelId": path.split("/")[2], "body": raw, "contentType": sent["headers"]["content-type"]}, op.input_shape)
    assert not report.has_errors(), report.generate_report()
    return sent["body"]


def kw(body):
    """A recorded Messages body as SDK arguments (fields the SDK does not name as extras)."""
    rest = {k: v for k, v in body.items() if k not in ("max_tokens", "messages")}
    return {"max_tokens": body["max_tokens"], "messages": body["messages"], "extra_body": rest}


def test_messages_clients_reach_claude_on_bedrock_natively(gw, sim):
    """A Messages client's Claude request goes to InvokeModel as Anthropic's Bedrock client
    sends it, and Claude's answer comes back byte for byte (ids `msg_bdrk_…`)."""
    a = anthropic.Anthropic(base_url=gw.url, api_key=gw.key, max_retries=0)
    req, want = exchange("bedrock_invoke_anthropic_messages.exchange.json")
    model = "us.anthropic.claude-3-sonnet-20240229-v1:0"
    body = {k: v for k, v in req.items() if k != "anthropic_version"}
    sim.clear()
    m = a.messages.create(model=f"aws/{model}", **kw(body))
    assert m.id == want["id"] and m.content[0].text == want["content"][0]["text"]
    assert m.usage.input_tokens == 21 and m.usage.output_tokens == 22
    sent = sim.last()
    assert invoke_refereed(sent, model, body) == req, "the recorded request, as Bedrock took it"
    assert sent["headers"]["authorization"] == f"Bearer {SIM_PROVIDER_KEY}"

    # Streamed: the events Claude sent inside Bedrock's chunks, exactly, as SSE.
    stream_req = json.loads((BR / "bedrock_invoke_with_response_stream_anthropic.request.json").read_text())
    model = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
    body = {k: v for k, v in stream_req.items() if k != "anthropic_version"}
    sim.clear()
    with a.messages.stream(model=f"aws/{model}", **kw(body)) as s:
        final = s.get_final_message()
    assert s is not None and final.content[0].text == "4200 + 42 = 4242"
    assert final.usage.input_tokens == 17 and final.usage.output_tokens == 15
    assert invoke_refereed(sim.last(), model, {**body, "stream": True}) == stream_req
    with httpx.Client(base_url=gw.url, timeout=30) as h:
        r = h.post("/v1/messages", headers={"x-api-key": gw.key, "anthropic-version": "2023-06-01"},
                   json={"model": f"aws/{model}", "stream": True, **body})
    want_sse = "".join(
        f"event: {json.loads(base64.b64decode(e['payload']['bytes']))['type']}\n"
        f"data: {base64.b64decode(e['payload']['bytes']).decode()}\n\n"
        for e in events("bedrock_invoke_with_response_stream_anthropic"))
    assert r.status_code == 200 and r.text == want_sse

    # Beta flags go in the body, where Bedrock reads them.
    sim.clear()
    a.messages.create(model=f"aws/{model}", **kw(body), extra_headers={"anthropic-beta": "context-1m-2025-08-07,x-2"})
    sent = invoke_refereed(sim.last(), model, body, {"anthropic-beta": "context-1m-2025-08-07,x-2"})
    assert sent["anthropic_beta"] == ["context-1m-2025-08-07", "x-2"]
    assert "anthropic-beta" not in sim.last()["headers"]


def test_claude_tool_round_trip_on_bedrock_is_the_recorded_one(gw, sim):
    a = anthropic.Anthropic(base_url=gw.url, api_key=gw.key, max_retries=0)
    model = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
    for turn in (0, 1):
        req, want = exchange("bedrock_invoke_anthropic_tool_use_roundtrip.exchange.json", turn)
        body = {k: v for k, v in req.items() if k != "anthropic_version"}
        sim.clear()
        m = a.messages.create(model=f"aws/{model}", **kw(body))
        assert m.model_dump(exclude_none=True)["content"] == [
            {k: v for k, v in b.items() if v is not None} for b in want["content"]]
        assert m.stop_reason == want["stop_reason"]
        assert invoke_refereed(sim.last(), model, body) == req


def test_count_tokens_for_claude_on_bedrock(gw, sim):
    a = anthropic.Anthropic(base_url=gw.url, api_key=gw.key, max_retries=0)
    model = "anthropic.claude-sonnet-4-20250514-v1:0"
    tool = {"name": "get_weather", "description": "Get the weather for a location",
            "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}}}
    msgs = [{"role": "user", "content": "What is the weather in Paris?"}]
    sim.clear()
    r = a.messages.with_raw_response.count_tokens(model=f"aws/{model}", messages=msgs, tools=[tool])
    assert r.parse().input_tokens == 375 and r.headers["x-jusinfer-token-count"] == "upstream"
    sent = sim.last()
    assert sent["path"] == f"/model/{model}/count-tokens"
    op = _MODEL.operation_model("CountTokens")
    report = botocore.validate.ParamValidator().validate({"modelId": model, **sent["body"]}, op.input_shape)
    assert not report.has_errors(), report.generate_report()
    inner = json.loads(base64.b64decode(sent["body"]["input"]["invokeModel"]["body"]))
    assert inner == {"messages": msgs, "tools": [tool], "max_tokens": 1, "anthropic_version": "bedrock-2023-05-31"}
    # A cross-region inference profile is counted as its foundation model.
    sim.clear()
    a.messages.count_tokens(model=f"aws/us.{model}", messages=msgs)
    assert sim.last()["path"] == f"/model/{model}/count-tokens"
    # Bedrock's refusal in Anthropic's shape; a model Bedrock cannot count is estimated.
    with pytest.raises(anthropic.BadRequestError) as e:
        a.messages.count_tokens(model="aws/anthropic.invalid", messages=msgs)
    assert "model identifier is invalid" in e.value.body["error"]["message"]
    r = a.messages.with_raw_response.count_tokens(model="aws/amazon.nova-micro-v1:0", messages=msgs)
    assert r.headers["x-jusinfer-token-count"].startswith("estimated")


def test_claude_on_bedrock_errors_in_anthropic_shape(gw):
    a = anthropic.Anthropic(base_url=gw.url, api_key=gw.key, max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as e:
        a.messages.create(model="aws/us.anthropic.throttle", max_tokens=16, messages=MSG)
    assert e.value.body["error"]["type"] == "rate_limit_error"
    with pytest.raises(anthropic.InternalServerError) as e:
        a.messages.create(model="aws/us.anthropic.expired", max_tokens=16, messages=MSG, stream=True)
    assert e.value.status_code == 502


def test_reasoning_comes_back_with_its_signature_and_goes_back_byte_for_byte(client, sim):
    req, want = exchange("bedrock_converse_nonstream_reasoning_tool_use_roundtrip.exchange.json")
    want_rt = want["output"]["message"]["content"][0]["reasoningContent"]["reasoningText"]
    tools = [{"type": "function", "function": {"name": "get_user_country",
                                               "parameters": {"type": "object", "properties": {}}}}]
    ask = [{"role": "user", "content": "What is the largest city in the user country?"}]
    r = client.chat.completions.create(model="aws/us.anthropic.claude-reasoning", messages=ask, tools=tools,
                                       extra_body={"thinking": {"type": "enabled", "budget_tokens": 1024}})
    msg = r.choices[0].message
    assert msg.model_extra["reasoning_content"] == want_rt["text"]
    blocks = msg.model_extra["thinking_blocks"]
    assert blocks[0]["signature"] == want_rt["signature"]
    history = ask + [msg.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": msg.tool_calls[0].id, "content": "Mexico"}]
    sim.clear()
    final = client.chat.completions.create(model="aws/us.anthropic.claude-reasoning", messages=history, tools=tools,
                                           extra_body={"thinking": {"type": "enabled", "budget_tokens": 1024}})
    assert "Mexico City" in final.choices[0].message.content
    body = refereed(sim.last())
    assert body["messages"][1]["content"][0] == {"reasoningContent": {"reasoningText": want_rt}}
    assert body["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 1024}}

    # Streamed: reasoning_content deltas, then the block with its signature.
    chunks = list(client.chat.completions.create(model="aws/us.anthropic.claude-reasoning", messages=ask, stream=True))
    reasoning = "".join(c.choices[0].delta.model_extra.get("reasoning_content") or "" for c in chunks if c.choices)
    rec = [e["payload"]["delta"]["reasoningContent"] for e in events("bedrock_converse_stream_reasoning")
           if "reasoningContent" in e["payload"].get("delta", {})]
    assert reasoning == "".join(x.get("text", "") for x in rec)
    tb = [b for c in chunks if c.choices for b in (c.choices[0].delta.model_extra.get("thinking_blocks") or [])]
    assert tb[0]["signature"] == "".join(x.get("signature", "") for x in rec)

    # Redacted reasoning reaches the client as opaque bytes, unchanged.
    chunks = list(client.chat.completions.create(model="aws/us.anthropic.claude-redacted", messages=ask, stream=True))
    data = [b["data"] for c in chunks if c.choices for b in (c.choices[0].delta.model_extra.get("thinking_blocks") or [])
            if b["type"] == "redacted_thinking"]
    assert data == [e["payload"]["delta"]["reasoningContent"]["redactedContent"]
                    for e in events("bedrock_converse_stream_redacted_reasoning")
                    if "redactedContent" in e["payload"].get("delta", {}).get("reasoningContent", {})]


def test_cache_usage_and_finish_reasons(client):
    chunks = list(client.chat.completions.create(model="aws/us.anthropic.claude-cache", messages=MSG, stream=True,
                                                 stream_options={"include_usage": True}))
    u = recorded_usage("bedrock_converse_stream_cache_read")
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens == u["cacheReadInputTokens"] == 1028
    assert chunks[-1].usage.prompt_tokens == u["inputTokens"] + 1028
    r = client.chat.completions.create(model="aws/nova-length", messages=MSG)
    assert r.choices[0].finish_reason == "length"
    r = client.chat.completions.create(model="aws/nova-filter", messages=MSG)
    assert r.choices[0].finish_reason == "content_filter"
    chunks = list(client.chat.completions.create(model="aws/nova-filter", messages=MSG, stream=True))
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["content_filter"]


def test_bedrock_errors_in_each_dialect(gw, client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="aws/invalid", messages=MSG)
    assert e.value.body["message"] == "The provided model identifier is invalid."
    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(model="aws/expired", messages=MSG)
    assert e.value.status_code == 502 and e.value.body["code"] == "upstream_auth_error"
    assert "expired" in e.value.body["message"]
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="aws/throttle", messages=MSG)
    assert "Too many requests" in e.value.body["message"]
    a = anthropic.Anthropic(base_url=gw.url, api_key=gw.key, max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as e:
        a.messages.create(model="aws/throttle", max_tokens=16, messages=MSG)
    assert e.value.body["error"]["type"] == "rate_limit_error"
    with pytest.raises(anthropic.BadRequestError):
        a.messages.create(model="aws/invalid", max_tokens=16, messages=MSG)


def test_json_mode_through_converse_is_a_forced_tool(client, sim):
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"],
              "additionalProperties": False}
    fmt = {"type": "json_schema", "json_schema": {"name": "greeting", "strict": True, "schema": schema}}
    sim.clear()
    raw = client.chat.completions.with_raw_response.create(model="aws/us.amazon.probe", messages=MSG,
                                                           response_format=fmt)
    assert raw.headers.get("x-jusinfer-dropped-params") is None, "nothing dropped"
    r = raw.parse()
    assert set(json.loads(r.choices[0].message.content)) == {"answer"}
    assert r.choices[0].finish_reason == "stop" and not r.choices[0].message.tool_calls
    body = refereed(sim.last())
    assert body["toolConfig"]["toolChoice"] == {"tool": {"name": "greeting"}}
    assert body["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"] == schema
    chunks = list(client.chat.completions.create(model="aws/us.amazon.probe", messages=MSG, stream=True,
                                                 response_format={"type": "json_object"}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert isinstance(json.loads(text), dict)
    assert chunks[-1].choices[0].finish_reason == "stop"
    refereed(sim.last(), stream=True)


def test_responses_clients_reach_bedrock(client, sim):
    sim.clear()
    r = client.responses.create(model="aws/amazon.nova-micro-v1:0", input="What is 4200 + 42?")
    assert "4242" in r.output_text
    refereed(sim.last())


@pytest.mark.parametrize("body,needle", [
    ('kind = "bedrock"\nregion = "us-east-1"\naccess_key_id = "AKID"', "needs credentials"),
    ('kind = "bedrock"\napi_key = "k"', "needs region"),
    ('kind = "bedrock"\nregion = "us-east-1"\napi_key = "k"\naccess_key_id = "A"\nsecret_access_key = "s"', "choose one"),
    ('kind = "bedrock"\nregion = "us-east-1"\naws_profile = "p"\naccess_key_id = "A"\nsecret_access_key = "s"', "choose one"),
    ('kind = "azure"\nbase_url = "https://r.openai.azure.com"\nsecret_access_key = "s"', "Amazon Bedrock setting"),
    ('kind = "bedrock"\napi_key = "k"\nregion = "US East"', "expected a region"),
    ('kind = "openai"\nregion = "us-east-1"', "Amazon Bedrock setting"),
])
def test_bedrock_config_mistakes_are_named(tmp_path, body, needle):
    cfg = tmp_path / "b.toml"
    cfg.write_text(f"[providers.b]\n{body}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    r = subprocess.run([str(BIN), "config", "check", "--config", str(cfg)], capture_output=True, text=True,
                       timeout=30, env=env)
    assert r.returncode != 0 and needle in r.stderr and "b.toml:" in r.stderr, r.stderr


AKID, SECRET, TOKEN = "AKIDJUSINFERTEST0001", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYJUSINFERKEY", "IQoJb3JpZ2luX2VjEJusinferSessionToken"


def resigned(sim, sent, region="us-west-2", body=None, creds=(AKID, SECRET, TOKEN)):
    """botocore's SigV4 signature over the request exactly as the simulator received it
    (its path, the headers the gateway signed, the body's bytes), at the gateway's time."""
    auth_header = sent["headers"]["authorization"]
    signed = auth_header.split("SignedHeaders=")[1].split(",")[0].split(";")
    raw = base64.b64decode(sent["headers"]["x-sim-raw-body"]) if body is None else body
    req = AWSRequest(method="POST", url=sim.url + sent["path"], data=raw,
                     headers={h: sent["headers"][h] for h in signed})
    req.context["timestamp"] = sent["headers"]["x-amz-date"]
    signer = SigV4Auth(Credentials(*creds), "bedrock", region)
    canonical = signer.canonical_request(req)
    return signer.signature(signer.string_to_sign(req, canonical), req), signed


def test_sigv4_signatures_are_the_ones_botocore_computes(sim, tmp_path):
    g = start_gateway(sim.url, tmp_path, name="sigv4", extra=f'''
[providers.awssig]
kind = "bedrock"
base_url = "{sim.url}"
region = "us-west-2"
access_key_id = "{AKID}"
secret_access_key = "{SECRET}"
session_token = "{TOKEN}"
''')
    try:
        c = g.client()
        sim.clear()
        r = c.chat.completions.create(model="awssig/amazon.nova-micro-v1:0", messages=MSG)
        assert "4242" in r.choices[0].message.content
        chunks = list(c.chat.completions.create(model="awssig/us.anthropic.claude-text-tool", stream=True,
                                                messages=MSG, tools=[SECRET_TOOL]))
        assert chunks[-1].choices[0].finish_reason == "tool_calls"
        reqs = [x for x in sim.requests() if x["path"].startswith("/model/")]
        assert [x["path"] for x in reqs] == ["/model/amazon.nova-micro-v1:0/converse",
                                             "/model/us.anthropic.claude-text-tool/converse-stream"]
        for sent in reqs:
            refereed(sent, stream=sent["path"].endswith("-stream"), bearer=False)
            h = sent["headers"]
            auth = h["authorization"]
            date = h["x-amz-date"]
            assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={AKID}/{date[:8]}/us-west-2/bedrock/aws4_request, ")
            assert h["x-amz-security-token"] == TOKEN
            ours = auth.split("Signature=")[1]
            theirs, signed = resigned(sim, sent)
            assert {"host", "x-amz-date", "x-amz-security-token", "content-type"} <= set(signed)
            assert ours == theirs, (sent["path"], signed)
            # A request the service would refuse is caught: one byte of the body changed.
            raw = bytearray(base64.b64decode(h["x-sim-raw-body"]))
            raw[-2] ^= 1
            assert resigned(sim, sent, body=bytes(raw))[0] != ours
            assert resigned(sim, sent, region="us-east-1")[0] != ours
    finally:
        g.proc.stop()
    log = g.proc.stderr()
    assert SECRET not in log and TOKEN not in log


SIM_AWS_SECRET = "simSecretAccessKeyFromTheCredentialChain0"


@pytest.mark.parametrize("source", ["environment", "profile", "web identity", "container", "instance metadata"])
def test_keys_from_the_standard_aws_credential_chain(sim, tmp_path, source):
    """No key in the config: AWS's own chain finds one (aws-config), as AWS's SDKs would,
    and the gateway signs with it; temporary keys are fetched once and cached."""
    nowhere = str(tmp_path / "none")
    env = {"AWS_CONFIG_FILE": nowhere, "AWS_SHARED_CREDENTIALS_FILE": nowhere, "AWS_EC2_METADATA_DISABLED": "true"}
    extra = ""
    if source == "environment":
        env |= {"AWS_ACCESS_KEY_ID": "AKIDFROMENVIRONMENT1", "AWS_SECRET_ACCESS_KEY": SIM_AWS_SECRET,
                "AWS_SESSION_TOKEN": "ENVSESSIONTOKEN"}
        want, fetch = ("AKIDFROMENVIRONMENT1", "ENVSESSIONTOKEN"), None
    elif source == "profile":
        (tmp_path / "config").write_text("[profile jus]\nregion = eu-west-3\n")
        (tmp_path / "credentials").write_text(
            f"[default]\naws_access_key_id = AKIDDEFAULTPROFILE00\naws_secret_access_key = wrong\n\n"
            f"[jus]\naws_access_key_id = AKIDFROMPROFILEJUS01\naws_secret_access_key = {SIM_AWS_SECRET}\n")
        env |= {"AWS_CONFIG_FILE": str(tmp_path / "config"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials")}
        extra = 'aws_profile = "jus"\n'
        want, fetch = ("AKIDFROMPROFILEJUS01", None), None
    elif source == "web identity":
        (tmp_path / "token").write_text("eyJhbGciOiJSUzI1NiJ9.sim.sig")
        env |= {"AWS_WEB_IDENTITY_TOKEN_FILE": str(tmp_path / "token"),
                "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/jusinfer", "AWS_ROLE_SESSION_NAME": "jus",
                "AWS_ENDPOINT_URL_STS": sim.url + "/_aws/sts"}
        want, fetch = ("ASIASIMSTS", "SIMSESSIONTOKEN-sts"), "/_aws/sts"
    elif source == "container":
        env |= {"AWS_CONTAINER_CREDENTIALS_FULL_URI": sim.url + "/_aws/ecs",
                "AWS_CONTAINER_AUTHORIZATION_TOKEN": "sim-container-token"}
        want, fetch = ("ASIASIMECS", "SIMSESSIONTOKEN-ecs"), "/_aws/ecs"
    else:
        env |= {"AWS_EC2_METADATA_DISABLED": "false", "AWS_EC2_METADATA_SERVICE_ENDPOINT": sim.url}
        want, fetch = ("ASIASIMIMDS", "SIMSESSIONTOKEN-imds"), "/latest/meta-data/iam/security-credentials/jusinfer-sim-role"
    g = start_gateway(sim.url, tmp_path, name="chain", env=env, extra=f'''
[providers.awschain]
kind = "bedrock"
base_url = "{sim.url}"
region = "us-west-2"
{extra}
''')
    try:
        c = g.client()
        sim.clear()
        for _ in range(3):
            r = c.chat.completions.create(model="awschain/amazon.nova-micro-v1:0", messages=MSG)
            assert "4242" in r.choices[0].message.content
        reqs = sim.requests()
        sent = [x for x in reqs if x["path"].startswith("/model/")]
        assert len(sent) == 3
        for x in sent:
            h = x["headers"]
            assert h["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={want[0]}/"), h["authorization"]
            assert h.get("x-amz-security-token") == want[1]
            ours = h["authorization"].split("Signature=")[1]
            assert resigned(sim, x, creds=(want[0], SIM_AWS_SECRET, want[1]))[0] == ours
        if fetch:
            fetched = [x for x in reqs if x["path"].rstrip("/") == fetch]
            assert len(fetched) == 1, "temporary keys are cached until near their expiry"
        if source == "container":
            assert fetched[0]["headers"]["authorization"] == "sim-container-token"
        if source == "web identity":
            assert "WebIdentityToken=eyJhbGciOiJSUzI1NiJ9.sim.sig" in fetched[0]["body"]
    finally:
        g.proc.stop()
    log = g.proc.stderr()
    assert SIM_AWS_SECRET not in log and "SIMSESSIONTOKEN" not in log


def test_keys_near_their_expiry_are_fetched_again(sim, tmp_path):
    nowhere = str(tmp_path / "none")
    env = {"AWS_CONFIG_FILE": nowhere, "AWS_SHARED_CREDENTIALS_FILE": nowhere, "AWS_EC2_METADATA_DISABLED": "true",
           # Four minutes left: inside the five-minute refresh window at every request.
           "AWS_CONTAINER_CREDENTIALS_FULL_URI": sim.url + "/_aws/ecs?expires_in=240"}
    g = start_gateway(sim.url, tmp_path, name="expiry", env=env, extra=f'''
[providers.awschain]
kind = "bedrock"
base_url = "{sim.url}"
region = "us-west-2"
''')
    try:
        c = g.client()
        sim.clear()
        for _ in range(3):
            c.chat.completions.create(model="awschain/amazon.nova-micro-v1:0", messages=MSG)
        assert len([x for x in sim.requests() if x["path"] == "/_aws/ecs"]) == 3
    finally:
        g.proc.stop()


def test_a_clock_skewed_from_aws_is_corrected(sim, tmp_path):
    """Bedrock refuses a signature more than five minutes from its time; the gateway reads
    AWS's time from the refusal and signs again with it (as AWS's SDKs do)."""
    g = start_gateway(sim.url, tmp_path, name="skew", extra=f'''
[providers.awssig]
kind = "bedrock"
base_url = "{sim.url}"
region = "us-west-2"
access_key_id = "{AKID}"
secret_access_key = "{SECRET}"
session_token = "{TOKEN}"
''')
    try:
        c = g.client()
        sim.clear()
        r = c.chat.completions.create(model="awssig/us.amazon.skewed", messages=MSG)
        assert "4242" in r.choices[0].message.content
        first, second = [x for x in sim.requests() if x["path"].startswith("/model/")]
        assert second["headers"]["x-amz-date"] > first["headers"]["x-amz-date"]
        assert resigned(sim, second)[0] == second["headers"]["authorization"].split("Signature=")[1]
        # Learned once: the next request is signed with AWS's time at once.
        sim.clear()
        c.chat.completions.create(model="awssig/us.amazon.skewed", messages=MSG)
        assert len([x for x in sim.requests() if x["path"].startswith("/model/")]) == 1
    finally:
        g.proc.stop()


@pytest.mark.parametrize("model,calls", [("amazon.titan-embed-text-v2:0", 3), ("cohere.embed-english-v3", 1)])
def test_embeddings_from_titan_and_cohere_on_bedrock(client, sim, model, calls):
    texts = ["The food was delicious", "and the waiter", "very friendly indeed"]
    sim.clear()
    # The SDK asks for base64 floats by default.
    r = client.embeddings.create(model=f"aws/{model}", input=texts)
    assert [d.index for d in r.data] == [0, 1, 2]
    assert all(len(d.embedding) == 1024 for d in r.data)
    assert abs(sum(x * x for x in r.data[0].embedding) - 1) < 1e-3
    sent = [x for x in sim.requests() if x["path"] == f"/model/{model}/invoke"]
    assert len(sent) == calls
    op = _MODEL.operation_model("InvokeModel")
    for x in sent:
        raw = base64.b64decode(x["headers"]["x-sim-raw-body"])
        report = botocore.validate.ParamValidator().validate({"modelId": model, "body": raw}, op.input_shape)
        assert not report.has_errors(), report.generate_report()
    if calls == 3:
        # One call per text (concurrently: in any order).
        assert sorted(x["body"]["inputText"] for x in sent) == sorted(texts)
        assert all(set(x["body"]) == {"inputText"} for x in sent)
        assert r.usage.prompt_tokens == 4 + 3 + 3, "Titan's own counts (the simulator counts words)"
        r = client.embeddings.create(model=f"aws/{model}", input="short", dimensions=256, encoding_format="float")
        assert len(r.data[0].embedding) == 256
        with pytest.raises(openai.BadRequestError):
            client.embeddings.create(model=f"aws/{model}", input="x", dimensions=300)
    else:
        assert sent[0]["body"] == {"texts": texts, "input_type": "search_document"}
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="aws/amazon.nova-micro-v1:0", input="x")
    assert "does not embed" in e.value.body["message"]
