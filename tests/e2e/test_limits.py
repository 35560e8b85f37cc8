"""Keys, limits and budgets end to end through the official SDK, on SQLite and on
PostgreSQL: the admin API, allowed models, expiry and revocation, RPM and TPM with OpenAI's
x-ratelimit-* headers and Retry-After, and budgets (429 insufficient_quota)."""

import datetime as dt
import json
import sqlite3
import time

import httpx2 as httpx
import openai
import pytest

from conftest import start_gateway

MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def lgw(request, sim, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"limits-{request.param}")
    database = None
    if request.param == "postgres":
        pg = request.getfixturevalue("postgres")
        database = pg.url(pg.new_database())
    g = start_gateway(sim.url, tmp, database=database)
    if request.param == "postgres":
        g.sql = lambda q: pg.psql(q, db=database.rsplit("/", 1)[1])
    else:
        def sql(q, path=g.db):
            with sqlite3.connect(path, timeout=10) as con:
                con.execute(q)
        g.sql = sql
    yield g
    g.proc.stop()


def admin(gw, method, path, key=None, **kw):
    return httpx.request(method, gw.url + path, headers={"authorization": f"Bearer {key or gw.key}"}, timeout=10, **kw)


def mint(gw, **fields):
    r = admin(gw, "POST", "/admin/keys", json={"name": "t", **fields})
    assert r.status_code == 201, r.text
    return r.json()


def test_admin_api_create_list_get_update_revoke(lgw):
    k = mint(lgw, name="team-a", budget_usd=12.5, rpm=100, tpm=50000, models=["sim/*", "echo"],
             expires_in="30d", metadata={"team": "a"})
    assert k["key"].startswith("jinf_") and len(k["key"]) == 45
    assert k["object"] == "api_key" and k["status"] == "active"
    assert (k["budget_usd"], k["rpm"], k["tpm"], k["models"]) == (12.5, 100, 50000, ["sim/*", "echo"])
    assert k["metadata"] == {"team": "a"} and k["expires_at"] > time.time() + 29 * 86400
    assert "hash" not in k
    listed = admin(lgw, "GET", "/admin/keys").json()["data"]
    assert k["id"] in [x["id"] for x in listed]
    assert all("key" not in x and "hash" not in x for x in listed), "the secret is shown once, at creation"
    got = admin(lgw, "GET", f"/admin/keys/{k['id']}").json()
    assert got["name"] == "team-a" and got["spend_usd"] == 0
    up = admin(lgw, "PATCH", f"/admin/keys/{k['id']}", json={"rpm": None, "budget_usd": 20, "name": "team-a2"})
    assert up.status_code == 200, up.text
    assert (up.json()["rpm"], up.json()["budget_usd"], up.json()["name"], up.json()["tpm"]) == (None, 20, "team-a2", 50000)
    # The key works, then is revoked through the API and refused with 401.
    c = lgw.client(api_key=k["key"])
    c.chat.completions.create(model="echo", messages=MSG)
    rv = admin(lgw, "DELETE", f"/admin/keys/{k['id']}")
    assert rv.status_code == 200 and rv.json()["status"] == "revoked"
    with pytest.raises(openai.AuthenticationError) as e:
        c.chat.completions.create(model="echo", messages=MSG)
    assert e.value.code == "invalid_api_key" and "revoked" in e.value.message
    assert admin(lgw, "GET", "/admin/keys/key_nope").status_code == 404


def test_admin_api_validates_and_needs_an_admin_key(lgw):
    r = admin(lgw, "POST", "/admin/keys", json={"name": "x", "rpm": 0})
    assert r.status_code == 400 and r.json()["error"]["param"] == "rpm"
    r = admin(lgw, "POST", "/admin/keys", json={"name": "x", "budget": 3})
    assert r.status_code == 400, "unknown fields are refused, not silently dropped"
    plain = mint(lgw)
    for method, path in [("GET", "/admin/keys"), ("POST", "/admin/keys"), ("GET", "/admin/usage"),
                         ("DELETE", f"/admin/keys/{plain['id']}")]:
        r = admin(lgw, method, path, key=plain["key"], json={"name": "x"} if method == "POST" else None)
        assert r.status_code == 403, (method, path, r.text)
        assert r.json()["error"]["type"] == "permission_error"
    assert admin(lgw, "GET", "/admin/keys", key="jinf_" + "x" * 40).status_code == 401


def test_a_key_outside_its_models_gets_403_naming_the_model(lgw):
    k = mint(lgw, models=["echo"])
    c = lgw.client(api_key=k["key"])
    c.chat.completions.create(model="echo", messages=MSG)
    with pytest.raises(openai.PermissionDeniedError) as e:
        c.chat.completions.create(model="sim/text", messages=MSG)
    assert e.value.status_code == 403
    assert e.value.code == "model_not_allowed" and "sim/text" in e.value.message


def test_an_expired_key_gets_401(lgw):
    k = mint(lgw, expires_at=int(time.time()) - 5)
    assert k["status"] == "expired"
    with pytest.raises(openai.AuthenticationError) as e:
        lgw.client(api_key=k["key"]).chat.completions.create(model="echo", messages=MSG)
    assert e.value.code == "invalid_api_key" and "expired" in e.value.message


def test_rpm_headers_then_429_with_retry_after(lgw):
    k = mint(lgw, rpm=3)
    c = lgw.client(api_key=k["key"])
    for want_remaining in (2, 1, 0):
        raw = c.chat.completions.with_raw_response.create(model="sim/text", messages=MSG)
        assert raw.headers["x-ratelimit-limit-requests"] == "3"
        assert raw.headers["x-ratelimit-remaining-requests"] == str(want_remaining)
        assert raw.headers["x-ratelimit-reset-requests"].endswith("s")
    with pytest.raises(openai.RateLimitError) as e:
        c.chat.completions.create(model="sim/text", messages=MSG)
    err = e.value
    assert err.status_code == 429 and err.code == "rate_limit_exceeded" and err.type == "requests"
    assert 1 <= int(err.response.headers["retry-after"]) <= 61
    assert 0 < int(err.response.headers["retry-after-ms"]) <= 61000
    assert err.response.headers["x-ratelimit-remaining-requests"] == "0"
    # Streams count too, and are refused before any byte is streamed.
    with pytest.raises(openai.RateLimitError):
        c.chat.completions.create(model="sim/text", messages=MSG, stream=True)


def test_tpm_counts_the_prompt_estimate_then_settles_with_real_usage(lgw):
    k = mint(lgw, tpm=2000)
    c = lgw.client(api_key=k["key"])
    # A request with `max_tokens` holds its prompt estimate plus that maximum.
    r1 = c.chat.completions.with_raw_response.create(model="sim/text", messages=MSG, max_tokens=100)
    assert r1.headers["x-ratelimit-limit-tokens"] == "2000"
    rem1 = int(r1.headers["x-ratelimit-remaining-tokens"])
    assert rem1 < 2000 - 100, "the prompt estimate and the output maximum are counted up front"
    used1 = r1.parse().usage.total_tokens
    time.sleep(0.3)
    r2 = c.chat.completions.with_raw_response.create(model="sim/text", messages=MSG, max_tokens=100)
    rem2 = int(r2.headers["x-ratelimit-remaining-tokens"])
    # Same body, same hold: the difference is the first request's real usage.
    assert rem1 - rem2 == used1, (rem1, rem2, used1)
    # A stream carries the same headers, before its first byte.
    with c.chat.completions.with_streaming_response.create(model="sim/text", messages=MSG, stream=True,
                                                           max_tokens=100) as st:
        assert st.headers["x-ratelimit-limit-tokens"] == "2000"
        assert int(st.headers["x-ratelimit-remaining-tokens"]) < rem2
        for _ in st.iter_lines():
            pass
    # A prompt larger than what is left is refused with the tokens type and Retry-After.
    with pytest.raises(openai.RateLimitError) as e:
        c.chat.completions.create(model="sim/text", messages=[{"role": "user", "content": "x" * 9000}])
    assert e.value.type == "tokens" and e.value.code == "rate_limit_exceeded"
    assert int(e.value.response.headers["retry-after"]) >= 1
    # Without a maximum of its own a request holds what is left of the window (up to
    # hold_output_tokens) while it runs, and gives back what it did not use.
    time.sleep(0.3)
    r3 = c.chat.completions.with_raw_response.create(model="sim/text", messages=MSG)
    assert r3.headers["x-ratelimit-remaining-tokens"] == "0"
    time.sleep(0.3)
    r4 = c.chat.completions.with_raw_response.create(model="sim/text", messages=MSG, max_tokens=100)
    assert int(r4.headers["x-ratelimit-remaining-tokens"]) > 0


def test_budget_reached_gives_insufficient_quota(lgw):
    # sim/length is priced in the test config; one request costs more than this budget.
    k = mint(lgw, budget_usd=0.00001)
    c = lgw.client(api_key=k["key"])
    first = c.chat.completions.create(model="sim/length", messages=MSG)
    assert first.usage.cost > 0.00001
    time.sleep(0.3)
    with pytest.raises(openai.RateLimitError) as e:
        c.chat.completions.create(model="sim/length", messages=MSG)
    assert e.value.code == "insufficient_quota" and e.value.type == "insufficient_quota"
    # Spend is visible through the admin API once the ledger has the row.
    deadline = time.time() + 5
    while time.time() < deadline:
        got = admin(lgw, "GET", f"/admin/keys/{k['id']}").json()
        if got["spend_usd"] > 0:
            break
        time.sleep(0.1)
    assert got["spend_usd"] == pytest.approx(first.usage.cost, rel=1e-6)
    # Raising the budget lets the key through again.
    admin(lgw, "PATCH", f"/admin/keys/{k['id']}", json={"budget_usd": 1.0})
    c.chat.completions.create(model="sim/length", messages=MSG)


def test_admin_usage_summarizes_by_key(lgw):
    k = mint(lgw)
    c = lgw.client(api_key=k["key"])
    for _ in range(3):
        c.chat.completions.create(model="sim/length", messages=MSG)
    deadline = time.time() + 5
    while time.time() < deadline:
        rows = admin(lgw, "GET", f"/admin/usage?by=model&key={k['id']}&since=1h").json()["data"]
        if rows and rows[0]["requests"] == 3:
            break
        time.sleep(0.1)
    assert [(r["group"], r["requests"]) for r in rows] == [("sim/length", 3)]
    assert rows[0]["cost_usd"] > 0 and rows[0]["prompt_tokens"] > 0
    assert admin(lgw, "GET", "/admin/usage?by=colour").status_code == 400


def utc_ms(d: dt.datetime) -> int:
    return int(d.timestamp() * 1000)


def spent_after(gw, key_id, want, field="budget_spent_usd"):
    """The admin view of a key once its ledger shows `want` dollars in `field`."""
    deadline = time.time() + 5
    while True:
        got = admin(gw, "GET", f"/admin/keys/{key_id}").json()
        if got[field] == pytest.approx(want, rel=1e-6) or time.time() > deadline:
            return got
        time.sleep(0.1)


def test_budget_periods_count_spend_since_their_start_utc(lgw):
    """A daily budget counts today's spend only (yesterday's is history, still in the
    lifetime total), refuses with the reset time once spent, and weekly / monthly budgets
    count from Monday / the 1st at 00:00 UTC (Python's calendar as the referee)."""
    now = dt.datetime.now(dt.timezone.utc)
    if (24 * 3600) - (now.hour * 3600 + now.minute * 60 + now.second) < 90:
        time.sleep(95)  # not across midnight
        now = dt.datetime.now(dt.timezone.utc)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    tomorrow = today + dt.timedelta(days=1)
    monday = today - dt.timedelta(days=today.weekday())
    first = today.replace(day=1)
    next_month = (first + dt.timedelta(days=32)).replace(day=1)

    k = mint(lgw, budget_usd=1.0, budget_period="daily")
    assert (k["budget_period"], k["budget_resets_at"]) == ("daily", int(tomorrow.timestamp()))
    # Yesterday's $100, as the ledger's hourly rollup keeps it.
    hour = utc_ms(today) - 3_600_000
    lgw.sql(f"INSERT INTO usage_hourly (hour_ms, key_id, model, requests, errors, prompt_tokens, completion_tokens, cached_tokens, cost_usd, priced, unpriced, last_ms) VALUES ({hour}, '{k['id']}', 'sim/length', 1, 0, 10, 10, 0, 100.0, 1, 0, {hour})")
    got = admin(lgw, "GET", f"/admin/keys/{k['id']}").json()
    assert (got["spend_usd"], got["budget_spent_usd"]) == (100.0, 0.0)

    c = lgw.client(api_key=k["key"])
    cost = c.chat.completions.create(model="sim/length", messages=MSG).usage.cost
    assert 0 < cost < 1
    r = admin(lgw, "PATCH", f"/admin/keys/{k['id']}", json={"budget_usd": cost * 1.5})
    assert r.status_code == 200 and r.json()["budget_period"] == "daily"
    spent_after(lgw, k["id"], cost)
    c.chat.completions.create(model="sim/length", messages=MSG)  # $cost of $1.5·cost spent
    time.sleep(0.3)
    with pytest.raises(openai.RateLimitError) as e:
        c.chat.completions.create(model="sim/length", messages=MSG)
    assert e.value.code == "insufficient_quota"
    assert f"starts again at {tomorrow:%Y-%m-%d %H:%M:%S} UTC" in str(e.value)
    got = spent_after(lgw, k["id"], 2 * cost)
    assert got["spend_usd"] == pytest.approx(100 + 2 * cost)

    # A lifetime budget counts the history: $100 spent of $50.
    r = admin(lgw, "PATCH", f"/admin/keys/{k['id']}", json={"budget_usd": 50, "budget_period": None})
    assert (r.json()["budget_period"], r.json()["budget_resets_at"]) == (None, None)
    assert r.json()["budget_spent_usd"] == pytest.approx(100 + 2 * cost)
    with pytest.raises(openai.RateLimitError):
        c.chat.completions.create(model="sim/length", messages=MSG)

    # Weekly and monthly: yesterday counts when it was in this week / month.
    spent = 2 * cost
    for period, start, end in [("weekly", monday, monday + dt.timedelta(days=7)), ("monthly", first, next_month)]:
        r = admin(lgw, "PATCH", f"/admin/keys/{k['id']}", json={"budget_period": period})
        want = spent + (100 if hour >= utc_ms(start) else 0)
        assert r.json()["budget_spent_usd"] == pytest.approx(want), period
        assert r.json()["budget_resets_at"] == int(end.timestamp())
        # ...and admission agrees: a $50 budget admits only when yesterday is not counted.
        try:
            c.chat.completions.create(model="sim/length", messages=MSG)
            admitted = True
        except openai.RateLimitError:
            admitted = False
        assert admitted == (want < 50), period
        if admitted:  # (a Monday for weekly, the 1st for monthly) that answer is spent too
            spent += cost
            spent_after(lgw, k["id"], spent + (100 if hour >= utc_ms(start) else 0))

    # Bad periods are refused by name.
    r = admin(lgw, "PATCH", f"/admin/keys/{k['id']}", json={"budget_period": "yearly"})
    assert r.status_code == 400 and "budget_period" in r.text
    # The CLI lists the period and what it has spent.
    rows = {x["id"]: x for x in json.loads(lgw.cli("keys", "list", "--json").stdout)}
    assert rows[k["id"]]["budget_period"] == "monthly"
    table = lgw.cli("keys", "list").stdout
    assert "/month" in next(line for line in table.splitlines() if line.startswith(k["id"]))
