"""Every Response object and stream event the gateway writes, checked against OpenAI's
OpenAPI spec (see openai_schema.py): translated from Chat and Anthropic upstreams and from
echo, streamed and whole, text, tool calls, reasoning (with and without summaries),
structured output, incomplete answers."""

import json

import httpx2 as httpx
import pytest

from openai_schema import violations

CAPITAL_TOOL = {"type": "function", "name": "get_capital", "description": "The capital of a country",
                "parameters": {"type": "object", "properties": {"country": {"type": "string"}},
                               "required": ["country"], "additionalProperties": False}, "strict": True}
SCHEMA = {"type": "json_schema", "name": "city", "strict": True,
          "schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                     "additionalProperties": False}}

CASES = [
    ("echo", {"input": "hello"}),
    ("sim/text", {"input": "hello", "instructions": "Be brief.", "temperature": 0.5}),
    ("sim/parallel", {"input": "two calls", "tools": [CAPITAL_TOOL], "tool_choice": "auto"}),
    ("sim/reasoning", {"input": "hi"}),
    ("sim/reasoning", {"input": "hi", "reasoning": {"effort": "low", "summary": "auto"}}),
    ("sim/length", {"input": "hi", "max_output_tokens": 16}),
    ("echo", {"input": "Paris", "text": {"format": SCHEMA}}),
    ("claude/text", {"input": "hello", "metadata": {"k": "v"}}),
    ("claude/thinking-tool", {"input": "think", "include": ["reasoning.encrypted_content"],
                              "tools": [{**CAPITAL_TOOL, "name": "get_user_country"}]}),
    ("claude/weather", {"input": "weather in SF?", "tools": [{**CAPITAL_TOOL, "name": "get_weather"}]}),
]


def events_of(text):
    return [json.loads(ln[5:]) for ln in text.splitlines() if ln.startswith("data:") and ln[5:].strip()]


@pytest.mark.parametrize("model,body", CASES, ids=[f"{m}-{i}" for i, (m, _) in enumerate(CASES)])
def test_every_object_and_event_fits_openais_spec(gw, model, body):
    h = {"authorization": f"Bearer {gw.key}"}
    whole = httpx.post(gw.url + "/v1/responses", headers=h, json={"model": model, **body}, timeout=30)
    assert whole.status_code == 200, whole.text
    found = {}
    found["whole"] = violations(whole.json())
    with httpx.stream("POST", gw.url + "/v1/responses", headers=h, timeout=30,
                      json={"model": model, **body, "stream": True}) as r:
        assert r.status_code == 200
        events = events_of(r.read().decode())
    assert events[-1]["type"] in ("response.completed", "response.incomplete")
    for e in events:
        v = violations(e)
        if v:
            found.setdefault(e["type"], set()).update(v)
    stored = httpx.get(gw.url + f"/v1/responses/{whole.json()['id']}", headers=h, timeout=10).json()
    found["stored"] = violations(stored)
    assert not any(found.values()), {k: sorted(v) for k, v in found.items() if v}
