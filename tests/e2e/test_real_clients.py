"""The real-client lane: client libraries people point at a gateway, pinned in
tests/clients/package.json (installed by scripts/test.sh), run unmodified (base URL and key
only) against the real binary on echo, an OpenAI-compatible upstream (translated or
passed through) and an Anthropic upstream. A failure here means that client broke.

Each scenario is one `node tests/clients/scenarios.mjs <name>` run; what the client saw
comes back as JSON."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = ROOT / "tests/clients"



def run(gw, scenario, model, key=None, expect_fail=False, **env):
    assert shutil.which("node") and (CLIENTS / "node_modules").is_dir(), \
        "the real clients are not installed: scripts/test.sh installs them (npm ci in tests/clients)"
    r = subprocess.run(["node", str(CLIENTS / "scenarios.mjs"), scenario], capture_output=True, text=True,
                       timeout=120, cwd=CLIENTS,
                       env=dict(os.environ, JUSINFER_URL=gw.url, JUSINFER_KEY=key or gw.key, MODEL=model, **env))
    if expect_fail:
        assert r.returncode != 0, r.stdout
        return r.stderr
    assert r.returncode == 0, f"{scenario} on {model} failed:\n{r.stderr}"
    return json.loads(r.stdout)


@pytest.mark.parametrize("model", ["sim/reasoning", "claude/thinking"])
def test_node_openai_responses_stream_with_reasoning(gw, model):
    # Before: `missing content at index 0` (a reasoning_text delta to a part never opened).
    out = run(gw, "openai-responses-stream", model)
    assert out["output"][0]["type"] == "reasoning"
    assert out["output"][0]["content"][0]["type"] == "reasoning_text"
    assert out["output"][0]["content"][0]["text"]
    assert out["text"]
    # Asked for summaries (as Codex and the AI SDK do): the thinking shows as one.
    out = run(gw, "openai-responses-stream", model, SUMMARY="auto")
    assert "response.reasoning_summary_text.delta" in out["kinds"]
    assert out["output"][0]["summary"][0]["text"]


@pytest.mark.parametrize("model,names", [("sim/parallel", ["GetWeatherArgs", "get_stock_price"]),
                                         ("claude/parallel", ["get_weather", "get_user_country"])])
def test_node_openai_chat_streamed_tool_calls(gw, model, names):
    out = run(gw, "openai-chat-stream-tools", model)
    assert out["finish"] == "tool_calls"
    assert [c["name"] for c in out["calls"]] == names
    assert all(c["id"] and isinstance(c["args"], dict) for c in out["calls"])


@pytest.mark.parametrize("model", ["echo", "sim/text", "claude/text"])
def test_ai_sdk_responses_multi_turn_with_stored_items(gw, sim, model):
    # Before: the second turn failed with `item_reference items are not supported`.
    out = run(gw, "ai-sdk-responses-turns", model)
    assert len(out["texts"]) == 3 and all(out["texts"])
    if model == "echo":
        assert out["texts"] == ["First question.", "Second question.", "Third question."]


def test_ai_sdk_chat_tool_loop(gw, sim):
    # The simulator calls the same two tools at every step; the SDK runs them and sends
    # their results back.
    sim.clear()
    out = run(gw, "ai-sdk-chat-tools", "sim/parallel")
    assert [c[0] for c in out["calls"][:2]] == ["GetWeatherArgs", "get_stock_price"]
    assert out["steps"] == 2
    results = [m for m in sim.last()["body"]["messages"] if m["role"] == "tool"]
    assert [json.loads(m["content"]) for m in results] == [{"temp": 11}, {"price": 200}]


@pytest.mark.parametrize("chat", [False, True])
def test_ai_sdk_structured_output_on_echo(gw, chat):
    out = run(gw, "ai-sdk-object", "echo", **({"CHAT": "1"} if chat else {}))
    assert set(out["object"]) == {"city", "population"}
    assert isinstance(out["object"]["population"], int)


@pytest.mark.parametrize("model", ["echo", "sim/text", "claude/text"])
def test_ai_sdk_anthropic_provider(gw, model):
    out = run(gw, "ai-sdk-anthropic", model)
    assert out["text"] and out["streamed"]
    if model == "echo":
        assert out["text"] == out["streamed"] == "Say hello."


def test_anthropic_sdk_parse_on_a_translated_model(gw):
    # Before: `output_config.format` was ignored on translated models: plain text came back.
    out = run(gw, "anthropic-parse", "echo")
    assert set(out["parsed"]) == {"city", "population"}


@pytest.mark.parametrize("model", ["echo", "sim/reasoning", "claude/thinking"])
def test_anthropic_sdk_stream(gw, model):
    out = run(gw, "anthropic-stream", model)
    assert out["blocks"][-1] == "text"
    if model != "echo":
        assert out["blocks"][0] == "thinking"
