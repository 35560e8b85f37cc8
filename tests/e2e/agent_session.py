"""A 10-turn coding-agent session over Chat Completions (what Codex-style clients send:
no `cache_control` anywhere), shared by the prompt-cache test and bench/cache_cost.py."""

# Anthropic's published prices for Claude Sonnet 4.5, USD per million tokens: input,
# 5-minute cache writes (1.25x input), cache reads (0.1x input), output.
SONNET = {"input": 3.0, "cache_write": 3.75, "cache_read": 0.30, "output": 15.0}

SYSTEM = "You are a coding agent. " + " ".join(f"Rule {i}: keep changes small and tested." for i in range(300))
TOOLS = [{"type": "function", "function": {
    "name": f"tool_{i}", "description": f"Tool {i}: " + "does a careful thing with the repository. " * 8,
    "parameters": {"type": "object", "properties": {"path": {"type": "string"}, "n": {"type": "integer"}}}}}
    for i in range(8)]


def run_session(client, model, turns=10):
    """Each turn: the whole conversation so far plus a new ~2 KB tool output. Returns one
    (usage dict, gateway cost) pair per turn."""
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Fix the failing test."}]
    out = []
    for t in range(turns):
        r = client.chat.completions.create(model=model, messages=messages, tools=TOOLS, max_tokens=100)
        u = r.usage.model_dump()
        out.append((u, u["cost"]))
        messages.append({"role": "assistant", "content": r.choices[0].message.content})
        messages.append({"role": "user", "content": f"Output of step {t}:\n" + f"line {t} ok\n" * 180})
    return out


def published_cost(u):
    """The cost of one turn's usage at Anthropic's published prices (reads and writes
    priced apart; `prompt_tokens` includes both)."""
    d = u.get("prompt_tokens_details") or {}
    read = d.get("cached_tokens") or 0
    write = d.get("cache_write_tokens") or 0
    plain = u["prompt_tokens"] - read - write
    return (plain * SONNET["input"] + write * SONNET["cache_write"] + read * SONNET["cache_read"]
            + u["completion_tokens"] * SONNET["output"]) / 1e6
