"""The cost of a 10-turn agent session to an Anthropic model over Chat Completions, with
and without `auto_cache`, as the gateway prices it, checked against Anthropic's published
cache prices. The upstream is the simulator's `agent-cache` scenario, which computes usage
the way Anthropic's prompt cache does (token counts scaled from the recorded cache
exchange).

    .venv/bin/python bench/cache_cost.py        (after cargo build --release)
"""

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests/e2e"))

from agent_session import SONNET, published_cost, run_session  # noqa: E402
from conftest import FIXTURES, SIM_BIN, Proc, free_port, start_gateway, wait_http  # noqa: E402
import os  # noqa: E402


def main():
    port = free_port()
    sim = Proc([str(SIM_BIN), "--listen", f"127.0.0.1:{port}"], env=dict(os.environ, JUSINFER_FIXTURES=str(FIXTURES)))
    sim_url = f"http://127.0.0.1:{port}"
    wait_http(sim_url + "/v1/models")
    g = start_gateway(sim_url, Path(tempfile.mkdtemp()))
    try:
        client = g.client()
        plain = run_session(client, "claude/agent-cache")
        cached = run_session(client, "claudecache/agent-cache")
    finally:
        g.proc.stop()
        sim.stop()
    print(f"prices (USD/MTok): {SONNET}")
    print("| turn | prompt tokens | without: cost | with: cache write | cache read | plain input | cost |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for i, ((pu, pc), (cu, cc)) in enumerate(zip(plain, cached), 1):
        d = cu["prompt_tokens_details"] or {}
        w, r = d.get("cache_write_tokens", 0), d.get("cached_tokens", 0)
        print(f"| {i} | {pu['prompt_tokens']:,} | ${pc:.5f} | {w:,} | {r:,} | {cu['prompt_tokens'] - w - r:,} | ${cc:.5f} |")
    tp, tc = sum(c for _, c in plain), sum(c for _, c in cached)
    print(f"| total | | ${tp:.4f} | | | | ${tc:.4f} ({tc / tp:.2f}x) |")
    worst = max(abs(c - published_cost(u)) for u, c in plain + cached)
    print(f"largest difference between the gateway's cost and the published-price formula: {worst:.2e} USD")


if __name__ == "__main__":
    main()
