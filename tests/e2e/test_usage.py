"""The usage ledger: one row per request, written off the request path, flushed at
SIGTERM, and summarized by `jusinfer usage`."""

import json
import signal
import subprocess
import time

import openai
import pytest

from conftest import BIN, SIM_PROVIDER_KEY, start_gateway

MSG = [{"role": "user", "content": "hi"}]


def usage(gw, *args):
    r = subprocess.run([str(BIN), "usage", "--config", str(gw.config), "--json", *args],
                       capture_output=True, text=True, timeout=60, env={"SIM_PROVIDER_KEY": SIM_PROVIDER_KEY, "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    return {row["group"]: row for row in json.loads(r.stdout)}


@pytest.fixture()
def fresh(sim, tmp_path):
    g = start_gateway(sim.url, tmp_path)
    yield g
    g.proc.stop()


def test_every_request_gets_one_row_flushed_at_sigterm(fresh):
    c = fresh.client()
    c.chat.completions.create(model="sim/text", messages=MSG)
    c.chat.completions.create(model="sim/text", messages=MSG)
    list(c.chat.completions.create(model="sim/text", messages=MSG, stream=True))
    list(c.chat.completions.create(model="claude/cache-max", messages=MSG, stream=True))
    c.chat.completions.create(model="claude/cache", messages=MSG)
    c.chat.completions.create(model="echo", messages=[{"role": "user", "content": "a b c"}])
    c.embeddings.create(model="echo", input="x y")
    with pytest.raises(openai.NotFoundError):
        c.chat.completions.create(model="nope", messages=MSG)
    with pytest.raises(openai.APIStatusError):
        c.chat.completions.create(model="sim/text;status=500", messages=MSG)
    # SIGTERM flushes the ledger before exit.
    fresh.proc.p.send_signal(signal.SIGTERM)
    assert fresh.proc.p.wait(30) == 0
    by_model = usage(fresh, "--by", "model")
    assert by_model["sim/text"]["requests"] == 3
    assert by_model["sim/text"]["prompt_tokens"] == 14 * 3, "the stream's usage was read although the client did not ask"
    assert by_model["sim/text"]["completion_tokens"] == 37 + 37 + 30
    assert by_model["claude/cache-max"]["cached_tokens"] == 1031
    assert abs(by_model["claude/cache"]["cost_usd"] - (3 * 3.0 + 1111 * 0.3 + 418 * 3.75 + 33 * 15.0) / 1e6) < 1e-9
    assert by_model["echo"]["requests"] == 2 and by_model["echo"]["completion_tokens"] == 3
    assert by_model["nope"]["errors"] == 1
    assert by_model["sim/text;status=500"]["errors"] == 1
    by_provider = usage(fresh, "--by", "provider")
    assert by_provider["sim"]["requests"] == 4 and by_provider["claude"]["requests"] == 2
    by_key = usage(fresh, "--by", "key")
    assert sum(r["requests"] for r in by_key.values()) == 9
    table = subprocess.run([str(BIN), "usage", "--config", str(fresh.config)], capture_output=True, text=True,
                           env={"SIM_PROVIDER_KEY": SIM_PROVIDER_KEY})
    assert "sim/text" in table.stdout and "REQUESTS" in table.stdout


def test_abandoned_stream_is_recorded_with_what_was_seen(fresh):
    c = fresh.client()
    s = c.chat.completions.create(model="claude/text;gap_ms=200", messages=MSG, stream=True)
    next(iter(s))
    s.close()  # the client goes away mid-stream
    time.sleep(0.5)
    fresh.proc.p.send_signal(signal.SIGTERM)
    assert fresh.proc.p.wait(30) == 0
    rows = usage(fresh, "--by", "model")
    row = rows["claude/text;gap_ms=200"]
    assert row["requests"] == 1 and row["errors"] == 1, row
    assert row["prompt_tokens"] == 12, "input tokens from message_start survive the disconnect"


def test_abandoned_openai_stream_counts_the_tokens_seen(fresh):
    """The OpenAI dialect reports usage only at the end: an abandoned stream is recorded
    with the prompt estimate and about one token per content event received."""
    c = fresh.client()
    s = c.chat.completions.create(model="sim/text;gap_ms=150", messages=MSG, stream=True)
    it = iter(s)
    for _ in range(4):
        next(it)
    s.close()
    time.sleep(0.5)
    fresh.proc.p.send_signal(signal.SIGTERM)
    assert fresh.proc.p.wait(30) == 0
    row = usage(fresh, "--by", "model")["sim/text;gap_ms=150"]
    assert row["requests"] == 1 and row["errors"] == 1, row
    assert row["prompt_tokens"] > 0, "the prompt estimate"
    assert 4 <= row["completion_tokens"] < 37, "the events seen, not the whole answer"


def test_a_client_leaving_a_non_streaming_request_still_gets_a_row(fresh):
    c = fresh.client(timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        c.chat.completions.create(model="sim/text;delay_ms=1000", messages=MSG)
    time.sleep(1.0)
    fresh.proc.p.send_signal(signal.SIGTERM)
    assert fresh.proc.p.wait(30) == 0
    row = usage(fresh, "--by", "model")["sim/text;delay_ms=1000"]
    assert row["requests"] == 1 and row["errors"] == 1, row
