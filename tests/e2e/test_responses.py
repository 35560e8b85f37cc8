"""The OpenAI Responses API, stateful, through the gateway with the official `openai` SDK:
served by an OpenAI-shaped (Chat Completions) simulator and an Anthropic-shaped one
(translated both ways), passed through to a simulator that speaks Responses itself, and
kept in the store (SQLite; PostgreSQL shared by two instances)."""

import json
import time
import uuid

import httpx2 as httpx
import openai
import pytest
from pydantic import BaseModel

from conftest import FIXTURES, SIM_PROVIDER_KEY, start_gateway

CAPITAL_TOOL = {"type": "function", "name": "get_capital", "description": "The capital of a country",
                "parameters": {"type": "object", "properties": {"country": {"type": "string"}},
                               "required": ["country"], "additionalProperties": False}, "strict": True}
WEATHER_TOOL = {"type": "function", "name": "get_weather", "description": "Weather in a city",
                "parameters": {"type": "object", "properties": {"location": {"type": "string"},
                                                                "units": {"type": "string", "enum": ["c", "f"]}},
                               "required": ["location", "units"]}}


def tag() -> str:
    return uuid.uuid4().hex[:8]


def sse_events(raw: str):
    """(event name, data) pairs of an SSE body."""
    out = []
    for block in raw.replace("\r\n", "\n").split("\n\n"):
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        if data:
            out.append((name, json.loads("\n".join(data))))
    return out


def shape(names):
    """Event names, runs of the same delta collapsed (the order is what must match)."""
    out = []
    for n in names:
        if n.endswith(".delta") and out and out[-1] == n:
            continue
        out.append(n)
    return out


def recorded_names(rel):
    return [n for n, _ in sse_events((FIXTURES / rel).read_text())]


def raw_stream(gw, body, key=None):
    with httpx.stream("POST", gw.url + "/v1/responses", json={**body, "stream": True}, timeout=30,
                      headers={"authorization": f"Bearer {key or gw.key}"}) as r:
        text = "".join(r.iter_text())
        return r, text


def admin(gw, method, path, **kw):
    return httpx.request(method, gw.url + path, headers={"authorization": f"Bearer {gw.key}"}, timeout=10, **kw)


def chat_text_fixture():
    v = json.loads((FIXTURES / "openai-chat/chat_nonstream_text.json").read_text())
    return v["choices"][0]["message"]["content"], v["usage"]


# --- create ---------------------------------------------------------------------------

def test_create_text_from_a_chat_upstream(client, sim):
    sim.clear()
    r = client.responses.create(model="sim/text", input="Hello", instructions="Be brief.",
                                temperature=0.3, max_output_tokens=300, metadata={"run": "a"})
    text, usage = chat_text_fixture()
    assert r.id.startswith("resp_") and r.object == "response" and r.status == "completed"
    assert r.output_text == text
    assert r.output[0].type == "message" and r.output[0].role == "assistant"
    assert r.usage.input_tokens == usage["prompt_tokens"] and r.usage.output_tokens == usage["completion_tokens"]
    assert r.usage.output_tokens_details.reasoning_tokens == 0
    assert r.usage.input_tokens_details.cached_tokens == 0
    assert (r.model, r.instructions, r.temperature, r.max_output_tokens) == ("sim/text", "Be brief.", 0.3, 300)
    assert r.metadata == {"run": "a"} and r.store is True
    sent = sim.last()
    assert sent["path"] == "/v1/chat/completions"
    body = sent["body"]
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
    assert (body["model"], body["temperature"], body["max_tokens"]) == ("text", 0.3, 300)
    assert "metadata" not in body and "input" not in body


@pytest.mark.parametrize("model", ["sim/text", "claude/text"])
def test_image_parts_reach_the_upstream(client, sim, model):
    url = "data:image/png;base64,iVBORw0KGgo="
    client.responses.create(model=model, input=[{"role": "user", "content": [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": url, "detail": "low"}]}])
    parts = sim.last()["body"]["messages"][0]["content"]
    if model.startswith("sim/"):
        assert parts == [{"type": "text", "text": "What is this?"},
                         {"type": "image_url", "image_url": {"url": url, "detail": "low"}}]
    else:
        assert parts[0] == {"type": "text", "text": "What is this?"}
        assert parts[1]["type"] == "image" and parts[1]["source"]["type"] == "base64"
        assert parts[1]["source"]["media_type"] == "image/png"


def test_json_object_format(client, sim):
    client.responses.create(model="sim/text", input="JSON please", text={"format": {"type": "json_object"}})
    assert sim.last()["body"]["response_format"] == {"type": "json_object"}


def test_create_text_from_an_anthropic_upstream(client, sim):
    sim.clear()
    r = client.responses.create(model="claude/text", input="Hello", instructions="Be brief.")
    fx = json.loads((FIXTURES / "anthropic/anthropic_nonstream_text.json").read_text())
    want = "".join(b["text"] for b in fx["response"]["body"]["content"] if b["type"] == "text") \
        if "response" in fx else "".join(b["text"] for b in fx["content"] if b["type"] == "text")
    assert r.status == "completed" and r.output_text == want
    assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0
    sent = sim.last()
    assert sent["path"] == "/v1/messages"
    assert sent["body"]["system"] == "Be brief." or sent["body"]["system"][0]["text"] == "Be brief."
    assert sent["body"]["messages"][0]["role"] == "user"


@pytest.mark.parametrize("model", ["sim/text", "claude/text", "claude/thinking"])
def test_stream_helper_yields_the_final_response(client, model):
    with client.responses.stream(model=model, input="Hello") as s:
        deltas = [e.delta for e in s if e.type == "response.output_text.delta"]
        final = s.get_final_response()
    assert deltas and final.output_text == "".join(deltas)
    assert final.status == "completed" and final.id.startswith("resp_")
    assert final.usage.output_tokens > 0
    if model == "claude/thinking":
        assert final.output[0].type == "reasoning" and final.output[0].content[0].text
    stored = client.responses.retrieve(final.id)
    assert stored.output_text == final.output_text and stored.usage.output_tokens == final.usage.output_tokens


def test_echo_serves_responses(client):
    r = client.responses.create(model="echo", input="say this back")
    assert r.status == "completed" and "say this back" in r.output_text
    with client.responses.stream(model="echo", input="and this") as s:
        final = s.get_final_response()
    assert "and this" in final.output_text
    assert client.responses.retrieve(final.id).output_text == final.output_text


def test_raw_event_stream_matches_the_recorded_one(gw):
    r, raw = raw_stream(gw, {"model": "sim/text", "input": "Hello"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(raw)
    names = [n for n, _ in events]
    assert all(n == d["type"] for n, d in events), "event name = data.type"
    assert shape(names) == shape(recorded_names("responses/responses_stream_text.sse"))
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
    ids = {d["response"]["id"] for _, d in events if "response" in d}
    assert len(ids) == 1
    done = events[-1][1]["response"]
    assert done["status"] == "completed" and done["usage"]["total_tokens"] > 0
    assert "cost" in done["usage"]


def test_tool_call_event_stream_matches_the_recorded_one(gw):
    r, raw = raw_stream(gw, {"model": "sim/roundtrip", "input": "Capital of the UK?", "tools": [CAPITAL_TOOL]})
    names = [n for n, _ in sse_events(raw)]
    assert shape(names) == shape(recorded_names("responses/responses_stream_function_call.sse"))


def test_incomplete_when_the_upstream_stops_for_length(client):
    r = client.responses.create(model="sim/length", input="Write a story", max_output_tokens=16)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.output[0].status == "incomplete"


# --- function calling -----------------------------------------------------------------

@pytest.mark.parametrize("model,tool,stream", [("sim/roundtrip", CAPITAL_TOOL, True),
                                               ("claude/weather", WEATHER_TOOL, False),
                                               ("claude/weather", WEATHER_TOOL, True)])
def test_function_call_round_trip(client, sim, model, tool, stream):
    def create(**kw):
        if not stream:
            return client.responses.create(model=model, tools=[tool], **kw)
        with client.responses.stream(model=model, tools=[tool], **kw) as s:
            return s.get_final_response()

    first = create(input="What is it like? Use the tool, then answer.")
    calls = [o for o in first.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == tool["name"]
    assert calls[0].call_id and calls[0].id
    args = json.loads(calls[0].arguments)
    assert isinstance(args, dict) and args
    sim.clear()
    second = create(previous_response_id=first.id,
                    input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "Sunny, 21"}])
    assert second.status == "completed" and second.output_text
    assert second.previous_response_id == first.id
    body = sim.last()["body"]
    if model.startswith("sim/"):
        msgs = body["messages"]
        assert [m["role"] for m in msgs] == ["user", "assistant", "tool"]
        assert msgs[1]["tool_calls"][0]["id"] == calls[0].call_id
        assert msgs[1]["tool_calls"][0]["function"] == {"name": tool["name"], "arguments": calls[0].arguments}
        assert msgs[2] == {"role": "tool", "tool_call_id": calls[0].call_id, "content": "Sunny, 21"}
    else:
        msgs = body["messages"]
        assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
        use = [b for b in msgs[1]["content"] if b["type"] == "tool_use"][0]
        assert use["name"] == tool["name"] and use["input"] == args
        result = [b for b in msgs[2]["content"] if b["type"] == "tool_result"][0]
        assert result["tool_use_id"] == use["id"]


# --- structured output ----------------------------------------------------------------

class Person(BaseModel):
    name: str
    age: int
    admin: bool


@pytest.mark.parametrize("model", ["sim/json", "claude/forced-tool"])
def test_json_schema_output(client, sim, model):
    r = client.responses.parse(model=model, input="Who?", text_format=Person)
    assert isinstance(r.output_parsed, Person)
    assert r.text.format.type == "json_schema" and r.text.format.name == "Person"
    body = sim.last()["body"]
    if model.startswith("sim/"):
        sent = body["response_format"]
        assert sent["type"] == "json_schema" and sent["json_schema"]["name"] == "Person"
        assert sent["json_schema"]["strict"] is True
        assert set(sent["json_schema"]["schema"]["properties"]) == {"name", "age", "admin"}
    else:
        # Anthropic has no JSON mode: a forced tool whose input schema is the format's.
        assert r.output_parsed == Person(name="sim", age=42, admin=True)
        assert body["tool_choice"] == {"type": "tool", "name": "Person"}
        assert [o.type for o in r.output] == ["message"], "the forced tool is not a function call"


@pytest.mark.parametrize("model", ["sim/json", "claude/forced-tool"])
def test_json_schema_stream(client, model):
    with client.responses.stream(model=model, input="Who?", text_format=Person) as s:
        final = s.get_final_response()
    assert isinstance(final.output_parsed, Person)
    assert [o.type for o in final.output] == ["message"]


# --- state ----------------------------------------------------------------------------

def test_retrieve_list_input_items_and_delete(client):
    first = client.responses.create(model="sim/text", input="First question")
    second = client.responses.create(model="sim/text", input=[{"role": "user", "content": [
        {"type": "input_text", "text": "Second question"}]}], previous_response_id=first.id)
    got = client.responses.retrieve(second.id)
    assert got.id == second.id and got.output_text == second.output_text
    assert got.previous_response_id == first.id
    items = list(client.responses.input_items.list(second.id))
    # newest first: this turn's input, the first turn's answer, the first turn's input
    assert [i.type for i in items] == ["message", "message", "message"]
    assert [i.role for i in items] == ["user", "assistant", "user"]
    assert items[0].content[0].text == "Second question" and items[0].content[0].type == "input_text"
    assert items[2].content[0].text == "First question"
    assert items[1].id == first.output[0].id
    asc = client.responses.input_items.list(second.id, order="asc", limit=1)
    assert len(asc.data) == 1 and asc.has_more and asc.data[0].content[0].text == "First question"
    walked = [i.id for i in client.responses.input_items.list(second.id, limit=1)]
    assert walked == [i.id for i in items], "auto-pagination walks every item once"
    gone = client.responses.delete(first.id)
    assert gone is None or getattr(gone, "deleted", True)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(first.id)
    assert client.responses.retrieve(second.id).id == second.id


def test_store_false_is_not_kept(client):
    r = client.responses.create(model="sim/text", input="Hello", store=False)
    assert r.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="sim/text", input="again", previous_response_id=r.id)


def test_another_keys_responses_are_not_found(gw, client):
    mine = client.responses.create(model="sim/text", input="secret")
    k = admin(gw, "POST", "/admin/keys", json={"name": f"other-{tag()}"}).json()
    other = gw.client(api_key=k["key"])
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.input_items.list(mine.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(mine.id)
    with pytest.raises(openai.NotFoundError) as e:
        other.responses.create(model="sim/text", input="continue", previous_response_id=mine.id)
    assert e.value.body["param"] == "previous_response_id"
    assert client.responses.retrieve(mine.id).output_text == mine.output_text


def test_a_chain_of_five_turns_sends_the_whole_conversation(client, sim):
    """The simulator answers 400 unless it receives exactly 2k-1 messages at turn k:
    every earlier question and answer, in order, and no instructions from turn 1."""
    prev = None
    asked, answers = [], []
    for k in range(1, 6):
        q = f"question {k} {tag()}"
        asked.append(q)
        kw = {"instructions": "Only on turn one."} if k == 1 else {}
        extra = 1 if k == 1 else 0
        r = client.responses.create(model=f"sim/text;expect_messages={2 * k - 1 + extra}", input=q,
                                    previous_response_id=prev, **kw)
        answers.append(r.output_text)
        prev = r.id
    msgs = sim.last()["body"]["messages"]
    want = []
    for q, a in zip(asked, answers):
        want += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    assert msgs == want[:-1]
    assert all(m["role"] != "system" for m in msgs), "instructions are not carried over"
    assert len(list(client.responses.input_items.list(prev, limit=100))) == 9


def test_bad_input_names_its_param(gw):
    h = {"authorization": f"Bearer {gw.key}"}
    r = httpx.post(gw.url + "/v1/responses", headers=h, timeout=10,
                   json={"model": "sim/text", "input": "x", "previous_response_id": "resp_nope"})
    assert r.status_code == 404
    err = r.json()["error"]
    assert err["param"] == "previous_response_id" and err["type"] == "invalid_request_error"
    assert "resp_nope" in err["message"]
    for body, param in [({"model": "sim/text", "input": 5}, "input"),
                        ({"model": "sim/text"}, "input"),
                        ({"input": "x"}, "model"),
                        ({"model": "sim/text", "input": [{"type": "function_call", "name": "f"}]}, "input[0].call_id"),
                        ({"model": "sim/text", "input": "x", "text": {"format": {"type": "yaml"}}}, "text.format.type")]:
        r = httpx.post(gw.url + "/v1/responses", headers=h, json=body, timeout=10)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["param"] == param
    r = httpx.get(gw.url + "/v1/responses/resp_nope", headers=h, timeout=10)
    assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.get(gw.url + "/v1/responses/resp_nope", timeout=10)
    assert r.status_code == 401


def test_dropped_settings_are_named(client, sim):
    raw = client.responses.with_raw_response.create(
        model="sim/text", input="hi", tools=[{"type": "web_search_preview"}], truncation="auto")
    assert raw.headers["x-jusinfer-dropped-params"] == "tools[0] (web_search_preview), truncation"
    assert "tools" not in sim.last()["body"]


def test_usage_and_cost_are_metered(gw):
    """Rows in the ledger as for Chat Completions; `usage.cost` on the Response."""
    k = admin(gw, "POST", "/admin/keys", json={"name": f"meter-{tag()}"}).json()
    c = gw.client(api_key=k["key"])
    r = c.responses.create(model="sim/length", input="Write a story")
    events = list(c.responses.create(model="sim/length", input="Write a story", stream=True))
    assert events[-1].type == "response.incomplete"
    f = events[-1].response
    v = json.loads((FIXTURES / "openai-chat/chat_nonstream_finish_length.json").read_text())["usage"]
    # the catalog price of sim/length: 2.5 / 10 per million tokens
    want = (v["prompt_tokens"] * 2.5 + v["completion_tokens"] * 10) / 1e6
    assert r.to_dict()["usage"]["cost"] == pytest.approx(want)
    assert f.to_dict()["usage"]["cost"] == pytest.approx(want)
    deadline = time.time() + 10
    while time.time() < deadline:
        rows = admin(gw, "GET", f"/admin/usage?by=model&key={k['id']}&since=1h").json()["data"]
        if rows and rows[0]["requests"] == 2:
            break
        time.sleep(0.1)
    assert [(x["group"], x["requests"]) for x in rows] == [("sim/length", 2)]
    assert rows[0]["prompt_tokens"] == 2 * v["prompt_tokens"]
    assert rows[0]["completion_tokens"] == 2 * v["completion_tokens"]
    assert rows[0]["cost_usd"] == pytest.approx(2 * want)


# --- pass-through to an upstream that speaks Responses --------------------------------

PASS = f"""
[providers.oair]
kind = "openai"
base_url = "{{sim}}/v1"
api_key = "{SIM_PROVIDER_KEY}"
responses = true
"""


@pytest.fixture(scope="module")
def pgw(sim, tmp_path_factory):
    g = start_gateway(sim.url, tmp_path_factory.mktemp("resp-pass"), extra=PASS.replace("{sim}", sim.url))
    yield g
    g.proc.stop()


def test_passthrough_stream_is_byte_for_byte(pgw, sim):
    sim.clear()
    r, raw = raw_stream(pgw, {"model": "oair/text", "input": "Hello world"})
    assert r.status_code == 200
    assert raw == (FIXTURES / "responses/responses_stream_text.sse").read_text()
    assert sim.last()["path"] == "/v1/responses" and sim.last()["body"]["model"] == "text"
    rid = sse_events(raw)[-1][1]["response"]["id"]
    stored = pgw.client().responses.retrieve(rid)
    assert stored.output_text == "Hello! 🌍 How can I help you today?"


def test_passthrough_continues_from_the_gateways_store(pgw, sim):
    c = pgw.client()
    first = c.responses.create(model="oair/function", input="What is the capital of PotatoLand?",
                               tools=[CAPITAL_TOOL])
    fx = json.loads((FIXTURES / "responses/responses_nonstream_function_call_roundtrip.exchange.json").read_text())
    assert first.id == fx[0]["response"]["body"]["id"]
    call = first.output[0]
    sim.clear()
    second = c.responses.create(model="oair/function", previous_response_id=first.id, tools=[CAPITAL_TOOL],
                                input=[{"type": "function_call_output", "call_id": call.call_id,
                                        "output": "Potato City"}])
    assert second.output_text == "The capital of PotatoLand is Potato City."
    sent = sim.last()["body"]
    assert "previous_response_id" not in sent
    assert [i.get("type", "message") for i in sent["input"]] == ["message", "function_call", "function_call_output"]
    assert sent["input"][1]["call_id"] == call.call_id


def test_passthrough_keeps_the_upstreams_item_ids_for_reasoning_models(pgw, sim):
    """OpenAI pairs a reasoning item with the call after it by id: a continued conversation
    sends this upstream's own items back with their ids, and nothing the gateway minted."""
    c = pgw.client()
    with c.responses.stream(model="oair/reasoning", input="What is 2+3*4? Use the calculator.") as s:
        first = s.get_final_response()
    assert [o.type for o in first.output] == ["reasoning", "function_call"]
    rs, fc = first.output
    sim.clear()
    with c.responses.stream(model="oair/reasoning", previous_response_id=first.id, input=[
            {"type": "function_call_output", "call_id": fc.call_id, "output": "12"}]) as s:
        second = s.get_final_response()
    assert [o.type for o in second.output] == ["function_call"]
    sent = sim.last()["body"]["input"]
    assert [i.get("type", "message") for i in sent] == ["message", "reasoning", "function_call", "function_call_output"]
    assert "id" not in sent[0] and "id" not in sent[3], "ids the gateway minted are not sent"
    assert sent[1]["id"] == rs.id and sent[1]["encrypted_content"] == rs.encrypted_content
    assert sent[2]["id"] == fc.id and sent[2]["call_id"] == fc.call_id
    stored = c.responses.retrieve(second.id)
    assert stored.previous_response_id == first.id


def test_a_conversation_moves_between_providers(pgw, sim):
    """Started on Anthropic (translated), continued on a pass-through provider: the other
    provider's reasoning items and the gateway's ids stay behind."""
    c = pgw.client()
    with c.responses.stream(model="claude/thinking", input="Think, then greet me.") as st:
        first = st.get_final_response()
    assert first.output[0].type == "reasoning"
    sim.clear()
    second = c.responses.create(model="oair/text", input="Again.", previous_response_id=first.id, stream=False)
    assert second.output_text
    sent = sim.last()["body"]["input"]
    assert [(i.get("type", "message"), i.get("role")) for i in sent] == \
        [("message", "user"), ("message", "assistant"), ("message", "user")]
    assert all("id" not in i for i in sent)


def test_passthrough_failure_ends_with_response_failed(pgw):
    r, raw = raw_stream(pgw, {"model": "oair/text;disconnect_after=6", "input": "Hello"})
    events = sse_events(raw)
    assert [n for n, _ in events[-2:]] == ["error", "response.failed"]
    failed = events[-1][1]["response"]
    assert failed["status"] == "failed" and failed["id"] == events[0][1]["response"]["id"]


def test_anthropic_thinking_signatures_survive_the_next_turn(client, sim):
    with client.responses.stream(model="claude/thinking", input="Think first.") as st:
        first = st.get_final_response()
    reasoning = first.output[0]
    assert reasoning.type == "reasoning" and reasoning.encrypted_content
    sim.clear()
    client.responses.create(model="claude/text", input="And now?", previous_response_id=first.id)
    assistant = sim.last()["body"]["messages"][1]
    assert assistant["role"] == "assistant"
    thinking = [b for b in assistant["content"] if b["type"] == "thinking"]
    fx = (FIXTURES / "anthropic/anthropic_stream_thinking.sse").read_text()
    signature = "".join(d["delta"]["signature"] for _, d in sse_events(fx)
                        if d.get("delta", {}).get("type") == "signature_delta")
    assert thinking and thinking[0]["signature"] == signature


def test_continuing_past_a_deleted_turn_is_refused(client):
    a = client.responses.create(model="sim/text", input="one")
    b = client.responses.create(model="sim/text", input="two", previous_response_id=a.id)
    client.responses.delete(a.id)
    with pytest.raises(openai.NotFoundError) as e:
        client.responses.create(model="sim/text", input="three", previous_response_id=b.id)
    assert e.value.body["param"] == "previous_response_id" and a.id in e.value.body["message"]
    assert [i.role for i in client.responses.input_items.list(b.id)] == ["user"], "what is left is listed"


# --- many instances -------------------------------------------------------------------

def test_stored_responses_are_shared_through_postgres(sim, postgres, tmp_path_factory):
    db = postgres.url(postgres.new_database())
    a = start_gateway(sim.url, tmp_path_factory.mktemp("resp-a"), database=db, name="a")
    try:
        b = start_gateway(sim.url, tmp_path_factory.mktemp("resp-b"), database=db, name="b", admin_key=a.key)
        try:
            with a.client().responses.stream(model="sim/text", input="on a") as s:
                made = s.get_final_response()
            got = b.client().responses.retrieve(made.id)
            assert got.output_text == made.output_text
            nxt = b.client().responses.create(model="sim/text;expect_messages=3", input="on b",
                                              previous_response_id=made.id)
            items = list(a.client().responses.input_items.list(nxt.id))
            assert [i.role for i in items] == ["user", "assistant", "user"]
            b.client().responses.delete(made.id)
            with pytest.raises(openai.NotFoundError):
                a.client().responses.retrieve(made.id)
        finally:
            b.proc.stop()
    finally:
        a.proc.stop()


# --- issue 17: real clients -------------------------------------------------------------
def test_regression_item_references_resolve_from_the_store(gw, client, sim):
    # The Vercel AI SDK (store on, its default) sends earlier items as item_reference.
    q = f"first question {tag()}"
    first = client.responses.create(model="sim/text", input=q)
    earlier = list(client.responses.input_items.list(first.id))
    assert len(earlier) == 1
    answer = first.output[-1]
    sim.clear()
    second = client.responses.create(model="sim/text", input=[
        {"type": "item_reference", "id": earlier[0].id},
        {"type": "item_reference", "id": answer.id},
        {"role": "user", "content": "and then?"}])
    sent = sim.last()["body"]["messages"]
    assert sent == [{"role": "user", "content": q},
                    {"role": "assistant", "content": first.output_text},
                    {"role": "user", "content": "and then?"}]
    # The resolved items are what the turn keeps.
    kept = [i.type for i in client.responses.input_items.list(second.id, order="asc")]
    assert kept == ["message", "message", "message"]
    # With previous_response_id too.
    third = client.responses.create(model="sim/text", previous_response_id=second.id, input=[
        {"type": "item_reference", "id": answer.id}, {"role": "user", "content": "once more"}])
    assert third.status == "completed"
    # Unknown ids, and another key's items: 404 in OpenAI's shape.
    k = admin(gw, "POST", "/admin/keys", json={"name": f"other-{tag()}"}).json()
    for c, ref in [(client, "msg_nope"), (gw.client(api_key=k["key"]), answer.id)]:
        with pytest.raises(openai.NotFoundError) as e:
            c.responses.create(model="sim/text", input=[{"type": "item_reference", "id": ref},
                                                        {"role": "user", "content": "x"}])
        assert e.value.body["type"] == "invalid_request_error" and e.value.body["param"] == "input"
        assert ref in e.value.body["message"]
    # A deleted response takes its items with it (those no later turn kept as its own).
    gone = client.responses.create(model="sim/text", input="to be deleted")
    client.responses.delete(gone.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="sim/text", input=[{"type": "item_reference", "id": gone.output[-1].id}])


def test_regression_reasoning_streams_open_and_close_their_parts(gw, client):
    r, text = raw_stream(gw, {"model": "sim/reasoning", "input": "hi"})
    events = sse_events(text)
    names = shape([n for n, _ in events])
    i = names.index("response.reasoning_text.delta")
    assert names[i - 1] == "response.content_part.added"
    assert names[i + 1:i + 3] == ["response.reasoning_text.done", "response.content_part.done"]
    added = next(d for n, d in events if n == "response.content_part.added")
    assert added["part"] == {"type": "reasoning_text", "text": ""}
    # Asked for summaries (Codex, the AI SDK): the reasoning arrives as one.
    with client.responses.stream(model="sim/reasoning", input="hi", reasoning={"summary": "auto"}) as st:
        kinds = [e.type for e in st]
        final = st.get_final_response()
    assert "response.reasoning_summary_part.added" in kinds and "response.reasoning_text.delta" not in kinds
    assert final.output[0].summary[0].text == "The user greets me. I greet back."
    raw = client.responses.with_raw_response.create(model="sim/reasoning", input="hi", reasoning={"summary": "auto"},
                                                    include=["reasoning.encrypted_content"])
    assert "x-jusinfer-dropped-params" not in raw.headers


def test_regression_response_objects_carry_every_field_strict_clients_require(gw, client):
    r, text = raw_stream(gw, {"model": "sim/text", "input": "hi", "tools": [
        {"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}]})
    snapshots = [d["response"] for _, d in sse_events(text) if "response" in d]
    whole = client.responses.create(model="sim/text", input="hi").model_dump()
    # The fields the Open Responses specification's response object requires (its
    # compliance suite validates against them; OpenAI's current API sends them all).
    required = ("id object created_at completed_at status incomplete_details model previous_response_id "
                "instructions output error tools tool_choice truncation parallel_tool_calls text top_p "
                "presence_penalty frequency_penalty top_logprobs temperature reasoning user usage "
                "max_output_tokens max_tool_calls store background service_tier metadata safety_identifier "
                "prompt_cache_key").split()
    for s in [*snapshots, whole]:
        for k in required:
            assert k in s, k
    assert snapshots[0]["completed_at"] is None and snapshots[-1]["completed_at"] >= snapshots[-1]["created_at"]
    assert snapshots[-1]["tools"][0]["strict"] is True
    assert whole["completed_at"] >= whole["created_at"]


def test_regression_a_free_model_costs_zero_in_every_dialect(gw, client):
    chat = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
    resp = client.responses.create(model="echo", input="hi")
    assert chat.usage.model_extra["cost"] == 0.0
    assert resp.usage.model_extra["cost"] == 0.0
    with client.responses.stream(model="echo", input="hi") as st:
        assert st.get_final_response().usage.model_extra["cost"] == 0.0


def test_effort_on_a_model_that_does_not_reason_is_dropped_and_named(client, sim):
    # Codex always sends `reasoning.effort`; a Chat model that does not reason refuses it.
    sim.clear()
    raw = client.responses.with_raw_response.create(model="sim/text;no_effort", input="hi",
                                                    reasoning={"effort": "medium"})
    assert raw.parse().output_text
    assert raw.headers["x-jusinfer-dropped-params"] == "reasoning.effort"
    assert [("reasoning_effort" in r["body"]) for r in sim.requests()] == [True, False]


def test_regression_a_tool_without_a_type_is_a_400_not_a_crash(gw):
    for model in ("echo", "sim/text"):
        r = httpx.post(gw.url + "/v1/responses", headers={"authorization": f"Bearer {gw.key}"}, timeout=10,
                       json={"model": model, "input": "hi", "tools": [{"name": "f"}]})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == "tools[0].type"
