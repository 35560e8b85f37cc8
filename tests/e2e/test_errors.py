"""Every error case of the gateway core, in OpenAI's shape, with the right status, type
and param; none of them wedges a worker."""

import json
import urllib.error
import urllib.request

import openai
import pytest

MSG = [{"role": "user", "content": "hi"}]


def raw_post(gw, body: bytes, key=None, path="/v1/chat/completions", headers=None):
    req = urllib.request.Request(gw.url + path, data=body, method="POST")
    req.add_header("content-type", "application/json")
    if key is not False:
        req.add_header("authorization", f"Bearer {key or gw.key}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def err(body: bytes):
    e = json.loads(body)["error"]
    assert set(e) == {"message", "type", "param", "code"}, e
    assert e["message"]
    return e


@pytest.mark.parametrize("body,param,code", [
    (b'{"model": "echo", "messages": [', None, "invalid_json"),
    (b'{"model": "echo", "messages": [{"role":"user","content":"x"}]} trailing', None, "invalid_json"),
    (b'[1, 2]', None, "invalid_json"),
    (b'', None, "invalid_json"),
    (b'{"model": "echo", "messages": []}', "messages", "empty_array"),
    (b'{"messages": [{"role":"user","content":"x"}]}', "model", "missing_required_parameter"),
    (b'{"model": "echo"}', "messages", "missing_required_parameter"),
    (b'{"model": "echo", "messages": "hi"}', "messages", "invalid_type"),
    (b'{"model": "echo", "messages": [{"role":"user","content":5}]}', "messages[0].content", "invalid_type"),
    (b'{"model": "echo", "messages": [{"role":"wizard","content":"x"}]}', "messages[0].role", "invalid_type"),
    (b'{"model": "echo", "messages": [{"role":"tool","content":"x"}]}', "messages[0].tool_call_id", "missing_required_parameter"),
    (b'{"model": "echo", "temperature": "hot", "messages": [{"role":"user","content":"x"}]}', "temperature", "invalid_type"),
    (b'{"model": "echo", "stream": "yes", "messages": [{"role":"user","content":"x"}]}', "stream", "invalid_type"),
    (b'{"model": "echo", "tools": [{"type":"function","function":{}}], "messages": [{"role":"user","content":"x"}]}', "tools[0].function.name", "missing_required_parameter"),
])
def test_bad_requests_are_400_with_param(gw, body, param, code):
    status, headers, out = raw_post(gw, body)
    assert status == 400, out
    e = err(out)
    assert (e["type"], e["param"], e["code"]) == ("invalid_request_error", param, code), e
    assert headers["x-request-id"]


def test_invalid_utf8(gw):
    status, _, out = raw_post(gw, b'{"model": "echo", "messages": [{"role":"user","content":"\xff\xfe"}]}')
    assert status == 400
    assert err(out)["code"] == "invalid_utf8"


def test_body_over_the_limit_is_413(gw):
    big = b'{"model":"echo","messages":[{"role":"user","content":"' + b"x" * (2 * 1024 * 1024) + b'"}]}'
    status, _, out = raw_post(gw, big)
    assert status == 413
    assert err(out)["code"] == "request_too_large"


def test_unknown_model_is_404_with_close_names(client):
    with pytest.raises(openai.NotFoundError) as ei:
        client.chat.completions.create(model="ecko", messages=MSG)
    e = ei.value.body
    assert (e["type"], e["param"], e["code"]) == ("invalid_request_error", "model", "model_not_found")
    assert "echo" in e["message"]


def test_sdk_wrong_type_reports_param(client):
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(model="echo", messages=MSG, max_tokens="lots")
    assert ei.value.body["param"] == "max_tokens"


def test_bad_missing_and_revoked_keys(gw):
    with pytest.raises(openai.AuthenticationError) as ei:
        gw.client(api_key="jinf_" + "x" * 40).chat.completions.create(model="echo", messages=MSG)
    assert ei.value.body["code"] == "invalid_api_key"
    assert ei.value.body["type"] == "invalid_request_error"
    status, _, out = raw_post(gw, b'{"model":"echo","messages":[{"role":"user","content":"x"}]}', key=False)
    assert status == 401 and err(out)["type"] == "invalid_request_error"
    created = json.loads(gw.cli("keys", "create", "--name", "temp", "--json").stdout)
    c = gw.client(api_key=created["key"])
    assert c.chat.completions.create(model="echo", messages=MSG).choices[0].message.content == "hi"
    gw.cli("keys", "revoke", created["prefix"])
    import time
    time.sleep(5.5)  # the key cache trusts a looked-up key for 5 s
    with pytest.raises(openai.AuthenticationError) as ei:
        c.chat.completions.create(model="echo", messages=MSG)
    assert "revoked" in ei.value.body["message"]


def test_model_allow_list(gw):
    created = json.loads(gw.cli("keys", "create", "--name", "limited", "--models", "echo,sim/*", "--json").stdout)
    c = gw.client(api_key=created["key"])
    assert c.chat.completions.create(model="echo", messages=MSG)
    with pytest.raises(openai.PermissionDeniedError) as ei:
        c.chat.completions.create(model="smart", messages=MSG)
    assert ei.value.body["param"] == "model"


# ---- upstream failures ----

def test_upstream_400_keeps_its_param(client):
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(model="sim/err400", messages=MSG)
    e = ei.value.body
    assert (e["param"], e["code"]) == ("max_tokens", "unsupported_parameter")


def test_upstream_401_is_the_gateways_problem_not_the_clients(client):
    with pytest.raises(openai.APIStatusError) as ei:
        client.chat.completions.create(model="sim/err401", messages=MSG)
    assert ei.value.status_code == 502
    assert ei.value.body["code"] == "upstream_auth_error"


def test_upstream_429_quota(client):
    with pytest.raises(openai.RateLimitError) as ei:
        client.chat.completions.create(model="sim/err429", messages=MSG)
    assert ei.value.body["type"] == "insufficient_quota"


@pytest.mark.parametrize("status", [500, 503, 529])
def test_upstream_5xx_is_502(client, status):
    with pytest.raises(openai.APIStatusError) as ei:
        client.chat.completions.with_raw_response.create(model=f"sim/text;status={status}", messages=MSG)
    assert ei.value.status_code == 502
    assert ei.value.body["type"] == "upstream_error"
    assert str(status) in ei.value.body["message"]
    assert ei.value.response.headers["x-jusinfer-provider"] == "sim"


def test_upstream_down_is_502(client):
    with pytest.raises(openai.APIStatusError) as ei:
        client.chat.completions.create(model="down/text", messages=MSG)
    assert ei.value.status_code == 502
    assert "cannot connect" in ei.value.body["message"]


def test_upstream_too_slow_is_504(client):
    with pytest.raises(openai.APIStatusError) as ei:
        client.chat.completions.create(model="sim/text;delay_ms=3000", messages=MSG)
    assert ei.value.status_code == 504
    assert ei.value.body["type"] == "timeout"


def test_truncated_json_is_502(client):
    with pytest.raises(openai.APIStatusError) as ei:
        client.chat.completions.create(model="sim/text;truncate_json", messages=MSG)
    assert ei.value.status_code == 502
    assert "not valid JSON" in ei.value.body["message"]


def test_wrong_content_type_is_502(client):
    for stream in (False, True):
        with pytest.raises(openai.APIStatusError) as ei:
            r = client.chat.completions.create(model="sim/text;content_type=text/html", messages=MSG, stream=stream)
            list(r)
        assert ei.value.status_code == 502
        assert "text/html" in ei.value.body["message"]


def test_broken_first_event_is_a_502_not_a_stream(client):
    with pytest.raises(openai.APIStatusError) as ei:
        list(client.chat.completions.create(model="sim/text;broken_sse=0", messages=MSG, stream=True))
    assert ei.value.status_code == 502
    assert "broken stream" in ei.value.body["message"]


@pytest.mark.parametrize("model,needle", [
    ("sim/text;broken_sse=3", "broken stream"),
    ("sim/text;disconnect_after=4", "broke off"),
    ("sim/text;gap_ms=2500", "idle timeout"),
])
def test_failure_after_the_stream_started_ends_with_an_error_event(client, model, needle):
    got = []
    with pytest.raises(openai.APIError) as ei:
        for c in client.chat.completions.create(model=model, messages=MSG, stream=True):
            got.append(c)
    assert got, "the stream had started"
    assert needle in str(ei.value.message)


def test_no_worker_is_wedged_after_all_that(client):
    for _ in range(20):
        assert client.chat.completions.create(model="echo", messages=MSG).choices[0].message.content == "hi"


@pytest.mark.parametrize("model", ["sim/text;gap_ms=200", "claude/text;gap_ms=200"])
def test_client_disconnect_cancels_the_upstream_stream(client, sim, model):
    import time
    before = sim.stats()["streams_cancelled"]
    s = client.chat.completions.create(model=model, messages=MSG, stream=True)
    next(iter(s))
    closed = time.time()
    s.close()  # the client goes away mid-stream
    while time.time() - closed < 3 and sim.stats()["streams_cancelled"] == before:
        time.sleep(0.01)
    assert sim.stats()["streams_cancelled"] == before + 1, "the upstream saw its reader go away"
