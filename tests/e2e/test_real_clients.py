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
from pydantic import BaseModel

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


# --- Python clients (pinned in tests/requirements.txt) ---------------------------------
class CityModel(BaseModel):
    city: str
    population: int


@pytest.mark.parametrize("responses_api", [False, True])
def test_langchain_openai(gw, sim, responses_api):
    from langchain_core.messages import HumanMessage
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="echo", base_url=gw.url + "/v1", api_key=gw.key, max_retries=0,
                     use_responses_api=responses_api)
    assert llm.invoke("hello there").text == "hello there"
    assert "".join(c.text for c in llm.stream("streamed words")) == "streamed words"
    # Structured output (json_schema: the default method) comes back parsed.
    city = llm.with_structured_output(CityModel).invoke("Paris?")
    assert isinstance(city, CityModel)
    # Tools on a translated upstream: the calls parsed into LangChain's shape.
    tooled = ChatOpenAI(model="sim/parallel", base_url=gw.url + "/v1", api_key=gw.key, max_retries=0,
                        use_responses_api=responses_api)
    m = tooled.bind_tools([{"type": "function", "function": {"name": "GetWeatherArgs", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]).invoke([HumanMessage("weather?")])
    assert [c["name"] for c in m.tool_calls][:1] == ["GetWeatherArgs"]


@pytest.mark.parametrize("model", ["echo", "sim/text", "claude/text"])
def test_langchain_anthropic(gw, model):
    from langchain_anthropic import ChatAnthropic

    llm = ChatAnthropic(model=model, base_url=gw.url, api_key=gw.key, max_retries=0, max_tokens=300)
    assert llm.invoke("hello there").text
    assert "".join(c.text for c in llm.stream("streamed words"))
    if model == "echo":
        # Before: `output_config.format` was ignored on translated models.
        city = llm.with_structured_output(CityModel, method="json_schema").invoke("Paris?")
        assert isinstance(city, CityModel)


def test_openai_agents_sdk_runs_a_tool_loop(gw, sim):
    from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
    from openai import AsyncOpenAI

    set_tracing_disabled(True)
    client = AsyncOpenAI(base_url=gw.url + "/v1", api_key=gw.key, max_retries=0)
    seen = []

    @function_tool
    def get_weather(location: str, units: str = "f") -> str:
        """The weather in a city."""
        seen.append(location)
        return "72 and sunny"

    # `claude/weather` (an Anthropic upstream) calls get_weather, then answers once it has
    # the result: the SDK runs the whole loop through /v1/responses.
    agent = Agent(name="weather", instructions="Use tools.", tools=[get_weather],
                  model=OpenAIResponsesModel(model="claude/weather", openai_client=client))
    result = Runner.run_sync(agent, "What is the weather in SF?", max_turns=4)
    assert len(seen) == 1 and seen[0], "the tool ran once, with the arguments the model sent"
    assert result.final_output
    plain = Agent(name="echo", model=OpenAIResponsesModel(model="echo", openai_client=client))
    assert Runner.run_sync(plain, "echo this back").final_output == "echo this back"


# --- coding agents: the real programs (pinned in tests/clients/package.json) ------------
BIN = CLIENTS / "node_modules/.bin"


def claude(gw, tmp_path, *args):
    """`claude -p …` with a throwaway home, against the gateway, nothing else on the wire."""
    home = tmp_path / "claude-home"
    home.mkdir(exist_ok=True)
    env = dict(os.environ, HOME=str(home), ANTHROPIC_BASE_URL=gw.url, ANTHROPIC_API_KEY=gw.key,
               CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1", DISABLE_AUTOUPDATER="1", DISABLE_TELEMETRY="1",
               DISABLE_ERROR_REPORTING="1")
    r = subprocess.run([str(BIN / "claude"), *args, "--output-format", "json"], capture_output=True, text=True,
                       timeout=180, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"claude {args} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    out = json.loads(r.stdout)
    assert out["is_error"] is False and out["subtype"] == "success", out
    return out


# `aws/us.anthropic.…`: Claude on Bedrock, reached through InvokeModel (the Messages body
# as Anthropic's own Bedrock client sends it, the answer's events passed through).
BEDROCK_CLAUDE = "aws/us.anthropic.claude-sonnet-4-5-20250929-v1:0"


@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "sim/text", "claude/text", BEDROCK_CLAUDE])
def test_claude_code_print_mode(gw, sim, tmp_path, model):
    sim.clear()
    out = claude(gw, tmp_path, "-p", "say hi", "--model", model)
    if model == "claude-sonnet-4-5":  # echo: the last user text comes back
        assert out["result"].rstrip().endswith("say hi")
    elif model == BEDROCK_CLAUDE:
        assert out["result"]
        sent = [r for r in sim.requests() if r["path"].startswith("/model/")]
        assert sent and all(r["path"] == "/model/us.anthropic.claude-sonnet-4-5-20250929-v1:0"
                            "/invoke-with-response-stream" for r in sent), [r["path"] for r in sent]
        body = sent[-1]["body"]
        assert body["anthropic_version"] == "bedrock-2023-05-31" and "model" not in body
        assert any("say hi" in json.dumps(m) for m in body["messages"])
    else:
        assert out["result"]
        sent = [r for r in sim.requests() if r["path"] in ("/v1/messages", "/v1/chat/completions")]
        assert sent, "the request reached the upstream"
    # A second turn of the same session.
    again = claude(gw, tmp_path, "-p", "and again", "--model", model, "--continue")
    assert again["result"]


def codex(gw, tmp_path, *args, model=None):
    """`codex exec --json …` with a throwaway CODEX_HOME whose provider is the gateway."""
    home = tmp_path / "codex-home"
    home.mkdir(exist_ok=True)
    (home / "config.toml").write_text(
        (f'model = "{model}"\n' if model else "")
        + 'model_provider = "jusinfer"\ncheck_for_update_on_startup = false\n\n'
        + f'[model_providers.jusinfer]\nname = "jusinfer"\nbase_url = "{gw.url}/v1"\n'
        + 'wire_api = "responses"\nenv_key = "JUSINFER_API_KEY"\n')
    env = dict(os.environ, HOME=str(home), CODEX_HOME=str(home), JUSINFER_API_KEY=gw.key)
    r = subprocess.run([str(BIN / "codex"), "exec", *args], capture_output=True, text=True, timeout=180,
                       cwd=tmp_path, env=env, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"codex exec {args} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    events = [json.loads(ln) for ln in r.stdout.splitlines() if ln.startswith("{")]
    return [e["item"]["text"] for e in events
            if e.get("type") == "item.completed" and e["item"].get("type") == "agent_message"]


@pytest.mark.parametrize("model", ["gpt-5.5", None])
def test_codex_exec(gw, tmp_path, model):
    # `None`: Codex's own default model, whose requests declare their tools in an
    # `additional_tools` input item (before: a 400).
    common = ["--skip-git-repo-check", "--json"]
    assert codex(gw, tmp_path, *common, "-s", "read-only", "say hi", model=model) == ["say hi"]
    assert codex(gw, tmp_path, "resume", "--last", *common, "second turn", model=model) == ["second turn"]


def test_claude_code_runs_a_tool_loop_on_a_translated_model(gw, sim, tmp_path):
    # `sim/agent` calls Claude Code's Read tool, then answers from the tool's result: the
    # loop crosses the Messages → Chat translation both ways twice.
    (tmp_path / "notes.txt").write_text("the secret word is tangerine\n")
    sim.clear()
    out = claude(gw, tmp_path, "-p", "read notes.txt", "--model", "sim/agent;tool=Read")
    assert out["result"].startswith("done: "), out["result"]
    chats = [r["body"] for r in sim.requests() if r["path"] == "/v1/chat/completions"]
    assert len(chats) == 2
    results = [m for m in chats[1]["messages"] if m["role"] == "tool"]
    assert results and results[0]["tool_call_id"] == "call_sim_agent_1"


def test_codex_runs_a_tool_loop_on_a_translated_model(gw, sim, tmp_path):
    # `sim/agent` calls Codex's `get_goal` tool (it runs nothing), then answers from the
    # result: the loop crosses the Responses → Chat translation both ways twice.
    sim.clear()
    texts = codex(gw, tmp_path, "--skip-git-repo-check", "--json", "-s", "read-only", "what is the goal?",
                  model="sim/agent;tool=get_goal")
    assert texts and texts[-1].startswith("done: "), texts
    chats = [r["body"] for r in sim.requests() if r["path"] == "/v1/chat/completions"]
    assert len(chats) == 2
    assert [m["role"] for m in chats[1]["messages"]][-2:] == ["assistant", "tool"]
    assert chats[1]["messages"][-2]["tool_calls"][0]["function"]["name"] == "get_goal"
