"""The exact response cache: hits, misses and bypasses through the official SDKs of every
dialect (streamed replays included), isolation between keys, expiry, the client's
Cache-Control, per-key opt-in and opt-out, what is never cached, the ledger and /metrics,
the admin API (size, purge), bounds, live settings on reload, and the Redis backend shared
by two instances."""

import json
import signal
import time
import uuid

import anthropic
import httpx2 as httpx
import openai
import pytest
from google import genai
from google.genai import types
from prometheus_client.parser import text_string_to_metric_families

from conftest import start_gateway

MODELS = """
[prices."sim/text"]
input = 2.5
output = 10.0

[[models]]
name = "c-chat"
route = ["sim/text"]
cache = true

[[models]]
name = "c-claude"
route = ["claude/text"]
cache = true

[[models]]
name = "c-gem"
route = ["gem/text"]
cache = true

[[models]]
name = "c-shared"
route = ["sim/text"]
cache = true
cache_shared = true

[[models]]
name = "c-short"
route = ["sim/text"]
cache = true
cache_ttl = 2

[[models]]
name = "c-det"
route = ["sim/text"]
cache = true
cache_when = "deterministic"

[[models]]
name = "c-header"
route = ["sim/text"]
cache = true
cache_when = "header"

[[models]]
name = "c-cut"
route = ["sim/text;disconnect_after=3"]
cache = true

[[models]]
name = "c-err"
route = ["sim/err400"]
cache = true

[[models]]
name = "c-embed"
route = ["az/text-embedding-3-small"]
cache = true

[[models]]
name = "plain"
route = ["sim/text"]
"""


@pytest.fixture(scope="module")
def cgw(sim, tmp_path_factory):
    g = start_gateway(sim.url, tmp_path_factory.mktemp("cache"), extra=MODELS)
    yield g
    g.proc.stop()
    log = g.proc.stderr()
    assert g.key not in log


def admin(g):
    return httpx.Client(base_url=g.url, timeout=30, headers={"authorization": f"Bearer {g.key}"})


def mint(g, **kw) -> str:
    return mint_record(g, **kw)["key"]


def mint_record(g, **kw) -> dict:
    r = admin(g).post("/admin/keys", json={"name": f"k-{uuid.uuid4().hex[:6]}", **kw})
    assert r.status_code == 201, r.text
    return r.json()


def upstream_calls(sim, marker: str) -> int:
    return sum(marker in json.dumps(r["body"]) for r in sim.requests())


def ask(marker: str, **kw) -> dict:
    return {"messages": [{"role": "user", "content": f"Say hi ({marker})"}], **kw}


def chat(g, model, marker, key=None, headers=None, **kw):
    c = g.client(api_key=key or g.key)
    return c.chat.completions.with_raw_response.create(model=model, extra_headers=headers or {},
                                                       **ask(marker, **kw))


def samples(g, name, **labels):
    text = admin(g).get("/metrics").text
    return [s.value for fam in text_string_to_metric_families(text) for s in fam.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


def test_a_repeat_is_a_hit_with_no_upstream_call_and_no_cost(cgw, sim):
    m = uuid.uuid4().hex
    first = settled(cgw, lambda: chat(cgw, "c-chat", m, temperature=0.2))
    assert first.headers["x-jusinfer-cache"] == "miss"
    # Field order, whitespace and the fields that do not change the answer do not count.
    body = json.dumps({"temperature": 0.2, "user": "someone", "metadata": {"a": "b"},
                       "model": "c-chat", **ask(m)}, indent=3)
    deadline = time.monotonic() + 5
    while True:
        second = admin(cgw).post("/v1/chat/completions", content=body,
                                 headers={"content-type": "application/json"})
        if second.headers.get("x-jusinfer-cache") == "hit" or time.monotonic() > deadline:
            break
        time.sleep(0.05)  # the entry is written just after the answer ends
    assert second.status_code == 200
    assert second.headers["x-jusinfer-cache"] == "hit", second.headers
    assert int(second.headers["age"]) >= 0
    assert second.headers["x-jusinfer-attempts"] == "0"
    a, b = first.parse(), second.json()
    assert b["choices"][0]["message"]["content"] == a.choices[0].message.content
    assert b["usage"]["prompt_tokens"] == a.usage.prompt_tokens
    # A hit is a new answer: its own id and time.
    assert b["id"] != a.id and b["id"].startswith("chatcmpl-") and b["created"] >= a.created
    assert upstream_calls(sim, m) == 1
    # A different request is a miss.
    third = chat(cgw, "c-chat", m, temperature=0.3)
    assert third.headers["x-jusinfer-cache"] == "miss"
    assert upstream_calls(sim, m) == 2
    # The ledger: the hit at cost 0, with what it saved; /metrics counts both.
    deadline = time.monotonic() + 10
    while True:  # rows are written within ~100 ms
        summary = admin(cgw).get("/admin/usage", params={"by": "model"}).json()
        row = next((r for r in summary["data"] if r["group"] == "c-chat"), None)
        if row and row["cache_hits"] >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert row and row["cache_hits"] >= 1 and row["saved_usd"] > 0, summary
    assert sum(samples(cgw, "jusinfer_cache_requests_total", result="hit")) >= 1
    assert sum(samples(cgw, "jusinfer_cache_requests_total", result="miss")) >= 2
    assert sum(samples(cgw, "jusinfer_cache_saved_usd_total", model="c-chat")) > 0


def writes(g) -> float:
    return sum(samples(g, "jusinfer_cache_writes_total"))


def settled(g, fn):
    """Calls `fn` (a miss), then waits until the cache's writer has dealt with its answer
    (it writes just after the answer ends), so the next identical request can hit."""
    before = writes(g)
    r = fn()
    deadline = time.monotonic() + 10
    while writes(g) <= before:
        assert time.monotonic() < deadline, "the answer never reached the cache's writer"
        time.sleep(0.02)
    return r


def wait_hit(fn, timeout=5.0):
    """Calls `fn` until its answer is a hit (the entry lands just after the miss ends)."""
    deadline = time.monotonic() + timeout
    while True:
        r = fn()
        if r.headers.get("x-jusinfer-cache") == "hit" or time.monotonic() > deadline:
            return r
        time.sleep(0.05)


def test_keys_are_isolated_unless_the_alias_shares(cgw, sim):
    m = uuid.uuid4().hex
    other = mint(cgw)
    assert settled(cgw, lambda: chat(cgw, "c-chat", m)).headers["x-jusinfer-cache"] == "miss"
    assert wait_hit(lambda: chat(cgw, "c-chat", m)).headers["x-jusinfer-cache"] == "hit"
    # Another tenant never reads the first one's answer.
    assert chat(cgw, "c-chat", m, key=other).headers["x-jusinfer-cache"] == "miss"
    assert upstream_calls(sim, m) == 2
    # An alias with cache_shared: one key's answer serves every key.
    s = uuid.uuid4().hex
    assert settled(cgw, lambda: chat(cgw, "c-shared", s)).headers["x-jusinfer-cache"] == "miss"
    assert wait_hit(lambda: chat(cgw, "c-shared", s, key=other)).headers["x-jusinfer-cache"] == "hit"
    assert upstream_calls(sim, s) == 1


def test_streamed_replay_through_the_openai_sdk(cgw, sim):
    m = uuid.uuid4().hex
    c = cgw.client()
    # A streamed miss fills the entry a plain request then hits: the stream is collected.
    chunks = settled(cgw, lambda: list(c.chat.completions.create(
        model="c-chat", stream=True, stream_options={"include_usage": True}, **ask(m))))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text
    whole = wait_hit(lambda: chat(cgw, "c-chat", m))
    assert whole.headers["x-jusinfer-cache"] == "hit"
    assert whole.parse().choices[0].message.content == text
    assert whole.parse().usage.completion_tokens == chunks[-1].usage.completion_tokens
    # And a streamed hit is a stream of the original shape: role first, usage last, [DONE].
    with c.chat.completions.with_streaming_response.create(
            model="c-chat", stream=True, stream_options={"include_usage": True}, **ask(m)) as r:
        assert r.headers["x-jusinfer-cache"] == "hit"
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert raw[-1] == "data: [DONE]"
    events = [json.loads(x[6:]) for x in raw[:-1]]
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] > 0
    assert all(e.get("usage") is None for e in events[:-1])
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1]) == text
    # A stream asked without usage still fills an entry with the usage the ledger saw.
    u = uuid.uuid4().hex
    settled(cgw, lambda: list(c.chat.completions.create(model="c-chat", stream=True, **ask(u))))
    plain_hit = wait_hit(lambda: chat(cgw, "c-chat", u))
    assert plain_hit.headers["x-jusinfer-cache"] == "hit"
    assert plain_hit.parse().usage.completion_tokens > 0
    # Without include_usage no usage chunk.
    again = list(c.chat.completions.create(model="c-chat", stream=True, **ask(m)))
    assert all(ch.usage is None for ch in again) and again[-1].choices[0].finish_reason == "stop"
    assert upstream_calls(sim, m) == 1


def test_messages_responses_and_gemini_replay_through_their_sdks(cgw, sim):
    m = uuid.uuid4().hex
    a = anthropic.Anthropic(base_url=cgw.url, api_key=cgw.key, max_retries=0)
    prompt = [{"role": "user", "content": f"Say hi ({m})"}]
    first = settled(cgw, lambda: a.messages.create(model="c-claude", max_tokens=200, messages=prompt))
    deadline = time.monotonic() + 5
    while True:
        with a.messages.stream(model="c-claude", max_tokens=200, messages=prompt) as s:
            hit = s.response.headers.get("x-jusinfer-cache")
            final = s.get_final_message()
        if hit == "hit" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert hit == "hit"
    beta = a.messages.with_raw_response.create(model="c-claude", max_tokens=200, messages=prompt,
                                               extra_headers={"anthropic-beta": "context-1m-2025-08-07"})
    assert beta.headers["x-jusinfer-cache"] == "miss"
    assert [b.model_dump() for b in final.content] == [b.model_dump() for b in first.content]
    assert final.stop_reason == first.stop_reason and final.usage.output_tokens == first.usage.output_tokens
    assert final.id != first.id and final.id.startswith("msg_")
    assert upstream_calls(sim, m) == 2

    r = uuid.uuid4().hex
    c = cgw.client()
    streamed = settled(cgw, lambda: list(c.responses.create(model="c-chat", input=f"Say hi ({r})",
                                                            stream=True, store=False)))
    done = streamed[-1].response
    replay = wait_hit(lambda: c.responses.with_raw_response.create(
        model="c-chat", input=f"Say hi ({r})", metadata={"mine": "yes"}, user="second"))
    assert replay.headers["x-jusinfer-cache"] == "hit"
    got = replay.parse()
    assert got.output_text == done.output_text
    # The envelope is this request's: its metadata and user, not the first request's.
    assert got.metadata == {"mine": "yes"} and got.user == "second" and got.store is True
    # `store` on: the replayed Response is this request's own, kept and continuable.
    assert got.id != done.id
    kept = c.responses.retrieve(got.id)
    assert kept.output_text == done.output_text
    with c.responses.stream(model="c-chat", input=f"Say hi ({r})", store=False) as s:
        events = [e.type for e in s]
        final = s.get_final_response()
    assert events[0] == "response.created" and events[-1] == "response.completed"
    assert final.output_text == done.output_text
    assert upstream_calls(sim, r) == 1

    g = uuid.uuid4().hex
    gc = genai.Client(api_key=cgw.key, http_options=types.HttpOptions(base_url=cgw.url))
    one = settled(cgw, lambda: gc.models.generate_content(model="c-gem", contents=f"Say hi ({g})"))
    deadline = time.monotonic() + 5
    while True:
        parts = list(gc.models.generate_content_stream(model="c-gem", contents=f"Say hi ({g})"))
        if upstream_calls(sim, g) == 1 and len(parts) == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert "".join(p.text or "" for p in parts) == one.text
    assert parts[0].response_id and parts[0].response_id != one.response_id
    assert parts[-1].usage_metadata.total_token_count == one.usage_metadata.total_token_count
    assert upstream_calls(sim, g) == 1


def test_embeddings_are_cached(cgw, sim):
    m = uuid.uuid4().hex
    c = cgw.client()
    first = settled(cgw, lambda: c.embeddings.with_raw_response.create(model="c-embed", input=f"text {m}"))
    assert first.headers["x-jusinfer-cache"] == "miss"
    second = wait_hit(lambda: c.embeddings.with_raw_response.create(model="c-embed", input=f"text {m}"))
    assert second.headers["x-jusinfer-cache"] == "hit"
    assert second.parse().data[0].embedding == first.parse().data[0].embedding
    assert upstream_calls(sim, m) == 1


def test_the_client_controls_it_with_cache_control(cgw, sim):
    m = uuid.uuid4().hex
    settled(cgw, lambda: chat(cgw, "c-chat", m))
    assert wait_hit(lambda: chat(cgw, "c-chat", m)).headers["x-jusinfer-cache"] == "hit"
    r = chat(cgw, "c-chat", m, headers={"cache-control": "no-store"})
    assert r.headers["x-jusinfer-cache"] == "bypass"
    r = chat(cgw, "c-chat", m, headers={"x-jusinfer-cache": "off"})
    assert r.headers["x-jusinfer-cache"] == "bypass"
    # no-cache: asked upstream again, and the entry refreshed.
    r = settled(cgw, lambda: chat(cgw, "c-chat", m, headers={"cache-control": "no-cache"}))
    assert r.headers["x-jusinfer-cache"] == "miss"
    assert upstream_calls(sim, m) == 4
    time.sleep(1.1)
    r = settled(cgw, lambda: chat(cgw, "c-chat", m, headers={"cache-control": "max-age=0"}))
    assert r.headers["x-jusinfer-cache"] == "miss"
    assert wait_hit(lambda: chat(cgw, "c-chat", m, headers={"cache-control": "max-age=60"})) \
        .headers["x-jusinfer-cache"] == "hit"


def test_entries_expire(cgw, sim):
    m = uuid.uuid4().hex
    settled(cgw, lambda: chat(cgw, "c-short", m))
    assert wait_hit(lambda: chat(cgw, "c-short", m)).headers["x-jusinfer-cache"] == "hit"
    time.sleep(2.2)
    assert chat(cgw, "c-short", m).headers["x-jusinfer-cache"] == "miss"
    assert upstream_calls(sim, m) == 2


def test_when_deterministic_or_on_request(cgw):
    m = uuid.uuid4().hex
    assert chat(cgw, "c-det", m, temperature=0.7).headers["x-jusinfer-cache"] == "bypass"
    assert settled(cgw, lambda: chat(cgw, "c-det", m, temperature=0)).headers["x-jusinfer-cache"] == "miss"
    assert wait_hit(lambda: chat(cgw, "c-det", m, temperature=0)).headers["x-jusinfer-cache"] == "hit"
    assert chat(cgw, "c-header", m).headers["x-jusinfer-cache"] == "bypass"
    on = {"x-jusinfer-cache": "on"}
    assert settled(cgw, lambda: chat(cgw, "c-header", m, headers=on)).headers["x-jusinfer-cache"] == "miss"
    assert wait_hit(lambda: chat(cgw, "c-header", m, headers=on)).headers["x-jusinfer-cache"] == "hit"


def test_keys_opt_in_and_out(cgw, sim):
    m = uuid.uuid4().hex
    # Off for the key: a cached alias says nothing and always asks upstream.
    off = mint(cgw, cache=False)
    for _ in range(2):
        r = chat(cgw, "c-chat", m, key=off)
        assert "x-jusinfer-cache" not in r.headers
    assert upstream_calls(sim, m) == 2
    # On for the key: a model without a cache of its own is cached for it, not for others.
    rec = mint_record(cgw)
    on, kid = rec["key"], rec["id"]
    assert chat(cgw, "plain", m, key=on).headers.get("x-jusinfer-cache") is None
    p = admin(cgw).patch(f"/admin/keys/{kid}", json={"cache": True})
    assert p.status_code == 200 and p.json()["cache"] is True, p.text
    assert settled(cgw, lambda: chat(cgw, "plain", m, key=on)).headers["x-jusinfer-cache"] == "miss"
    assert wait_hit(lambda: chat(cgw, "plain", m, key=on)).headers["x-jusinfer-cache"] == "hit"
    assert chat(cgw, "plain", m).headers.get("x-jusinfer-cache") is None


def test_errors_and_unfinished_streams_are_never_cached(cgw, sim):
    m = uuid.uuid4().hex
    c = cgw.client()
    for _ in range(2):
        with pytest.raises(openai.BadRequestError):
            c.chat.completions.create(model="c-err", **ask(m))
        time.sleep(0.3)  # time enough for a (wrongly) kept answer to be written
    assert upstream_calls(sim, m) == 2
    cut = uuid.uuid4().hex
    for _ in range(2):
        with pytest.raises(Exception):
            list(c.chat.completions.create(model="c-cut", stream=True, **ask(cut)))
        time.sleep(0.3)
    assert upstream_calls(sim, cut) == 2
    assert sum(samples(cgw, "jusinfer_cache_writes_total", result="uncacheable")) >= 1


def test_admin_size_purge_and_portal_numbers(cgw, sim):
    m = uuid.uuid4().hex
    settled(cgw, lambda: chat(cgw, "c-chat", m))
    assert wait_hit(lambda: chat(cgw, "c-chat", m)).headers["x-jusinfer-cache"] == "hit"
    info = admin(cgw).get("/admin/cache").json()
    assert info["backend"] == "store" and info["entries"] >= 1 and info["bytes"] > 0
    # A normal key may not see or purge the cache.
    plain = mint(cgw)
    assert httpx.delete(cgw.url + "/admin/cache", headers={"authorization": f"Bearer {plain}"}).status_code == 403
    r = admin(cgw).delete("/admin/cache", params={"model": "c-chat"})
    assert r.status_code == 200 and r.json()["purged"] >= 1
    assert chat(cgw, "c-chat", m).headers["x-jusinfer-cache"] == "miss"
    r = admin(cgw).delete("/admin/cache")
    assert r.status_code == 200
    assert admin(cgw).get("/admin/cache").json()["entries"] == 0


def test_bounds_and_settings_follow_a_reload(sim, tmp_path):
    extra = MODELS + "\n[cache]\nmax_entries = 3\n"
    g = start_gateway(sim.url, tmp_path, extra=extra)
    try:
        for i in range(6):
            chat(g, "c-chat", f"{uuid.uuid4().hex}-{i}")
        deadline = time.monotonic() + 5
        while admin(g).get("/admin/cache").json()["entries"] > 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        assert admin(g).get("/admin/cache").json()["entries"] == 3
        # A reload turns the alias's cache off at once (and the bound up).
        text = g.config.read_text().replace('name = "c-chat"\nroute = ["sim/text"]\ncache = true',
                                            'name = "c-chat"\nroute = ["sim/text"]')
        g.config.write_text(text)
        g.proc.p.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "x-jusinfer-cache" in chat(g, "c-chat", "after").headers:
            assert time.monotonic() < deadline, g.proc.stderr()[-2000:]
            time.sleep(0.05)
    finally:
        g.proc.stop()


def test_redis_backend_is_shared_by_instances(sim, redis_server, tmp_path):
    a = start_gateway(sim.url, tmp_path, extra=MODELS + "\n[cache]\nmax_entries = 50\n",
                      redis=redis_server.url(), name="a")
    b = start_gateway(sim.url, tmp_path, extra=MODELS + "\n[cache]\nmax_entries = 50\n",
                      redis=redis_server.url(), name="b")
    try:
        assert admin(a).get("/admin/cache").json()["backend"] == "redis"
        m = uuid.uuid4().hex
        # A shared alias: instance b (its own database and keys) hits a's answer.
        assert settled(a, lambda: chat(a, "c-shared", m)).headers["x-jusinfer-cache"] == "miss"
        hit = wait_hit(lambda: chat(b, "c-shared", m))
        assert hit.headers["x-jusinfer-cache"] == "hit"
        assert upstream_calls(sim, m) == 1
        # Streamed replay from Redis.
        chunks = list(b.client().chat.completions.create(model="c-shared", stream=True, **ask(m)))
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == \
            hit.parse().choices[0].message.content
        # Per-key isolation holds on Redis too: a's key is not b's.
        k = uuid.uuid4().hex
        assert settled(a, lambda: chat(a, "c-chat", k)).headers["x-jusinfer-cache"] == "miss"
        assert wait_hit(lambda: chat(a, "c-chat", k)).headers["x-jusinfer-cache"] == "hit"
        assert chat(b, "c-chat", k).headers["x-jusinfer-cache"] == "miss"
        # Bounded: 60 more entries leave at most 50.
        for i in range(60):
            chat(a, "c-shared", f"{m}-{i}")
        time.sleep(0.5)
        info = admin(b).get("/admin/cache").json()
        assert 0 < info["entries"] <= 50, info
        # Purge from one instance empties it for both.
        fresh = uuid.uuid4().hex
        settled(a, lambda: chat(a, "c-shared", fresh))
        assert wait_hit(lambda: chat(b, "c-shared", fresh)).headers["x-jusinfer-cache"] == "hit"
        assert admin(b).delete("/admin/cache", params={"model": "c-shared"}).json()["purged"] >= 1
        assert chat(a, "c-shared", fresh).headers["x-jusinfer-cache"] == "miss"
        assert admin(a).delete("/admin/cache").json()["purged"] >= 1
        info = admin(b).get("/admin/cache").json()
        assert info["entries"] == 0 and info["bytes"] == 0, info
        # Redis gone: requests are answered upstream, nothing fails.
        redis_server.proc.stop()
        try:
            for _ in range(3):
                r = chat(a, "c-shared", m)
                assert r.status_code == 200
        finally:
            redis_server.start()
    finally:
        a.proc.stop()
        b.proc.stop()


def test_the_store_backend_on_postgresql(sim, postgres, tmp_path):
    g = start_gateway(sim.url, tmp_path, extra=MODELS + "\n[cache]\nmax_entries = 4\n",
                      database=postgres.url(postgres.new_database()), name="pg")
    try:
        m = uuid.uuid4().hex
        assert settled(g, lambda: chat(g, "c-chat", m)).headers["x-jusinfer-cache"] == "miss"
        hit = wait_hit(lambda: chat(g, "c-chat", m))
        assert hit.headers["x-jusinfer-cache"] == "hit"
        other = mint(g)
        assert chat(g, "c-chat", m, key=other).headers["x-jusinfer-cache"] == "miss"
        for _ in range(6):
            settled(g, lambda: chat(g, "c-chat", uuid.uuid4().hex))
        info = admin(g).get("/admin/cache").json()
        assert info["backend"] == "store" and info["entries"] == 4, info
        r = admin(g).delete("/admin/cache", params={"key_id": mint_record(g)["id"]})
        assert r.status_code == 200 and r.json()["purged"] == 0
        assert admin(g).delete("/admin/cache").json()["purged"] == 4
        assert upstream_calls(sim, m) == 2
    finally:
        g.proc.stop()
