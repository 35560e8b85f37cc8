"""Many instances: two gateways on different ports sharing one PostgreSQL and one Redis.
Limits, budgets and revocations hold across both; and the usage ledger survives the
database going away under load followed by SIGTERM."""

import concurrent.futures
import datetime as dt
import signal
import subprocess
import re
import threading
import time
import uuid

import httpx2 as httpx
import openai
import pytest

from conftest import start_gateway

MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def pair(sim, postgres, redis_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pair")
    name = postgres.new_database()
    db = postgres.url(name)
    a = start_gateway(sim.url, tmp, database=db, redis=redis_server.url(), name="a")
    a.sql = lambda q: postgres.psql(q, db=name)
    b = start_gateway(sim.url, tmp, database=db, redis=redis_server.url(), admin_key=a.key, name="b")
    yield a, b
    a.proc.stop()
    b.proc.stop()


def mint(gw, **fields):
    r = httpx.post(gw.url + "/admin/keys", headers={"authorization": f"Bearer {gw.key}"},
                   json={"name": "shared", **fields}, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()


def test_rpm_holds_across_instances(pair):
    a, b = pair
    k = mint(a, rpm=10)
    clients = [a.client(api_key=k["key"]), b.client(api_key=k["key"])]

    def one(i):
        try:
            clients[i % 2].chat.completions.create(model="echo", messages=MSG)
            return i % 2, 200
        except openai.RateLimitError as e:
            assert e.code == "rate_limit_exceeded"
            return i % 2, 429

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(30)))
    ok = [inst for inst, status in results if status == 200]
    assert len(ok) == 10, results
    assert set(ok) == {0, 1}, "both instances served part of the ten"
    assert sum(1 for _, s in results if s == 429) == 20


def test_large_limits_are_leased_yet_never_exceeded(pair):
    """rpm=1000: instances reserve leases of requests in Redis instead of asking per
    request; they never admit more than the limit, and what a lease did not use comes back
    within a second."""
    a, b = pair
    k = mint(a, rpm=1000)
    clients = [a.client(api_key=k["key"]), b.client(api_key=k["key"])]

    def one(i):
        try:
            clients[i % 2].chat.completions.create(model="echo", messages=MSG)
            return 1
        except openai.RateLimitError:
            return 0

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        first = sum(pool.map(one, range(1100)))
        assert first <= 1000
        time.sleep(1.5)  # unused leases are given back
        second = sum(pool.map(one, range(200)))
    assert first + second == 1000, (first, second)


def test_budget_cannot_be_overspent_beyond_requests_in_flight(pair):
    a, b = pair
    probe = mint(a)
    cost = a.client(api_key=probe["key"]).chat.completions.create(model="sim/length", messages=MSG, max_tokens=64).usage.cost
    assert cost > 0
    budget = cost * 5.5
    k = mint(a, budget_usd=budget)
    clients = [a.client(api_key=k["key"]), b.client(api_key=k["key"])]
    concurrency = 4
    spent = []
    lock = threading.Lock()

    def worker(i):
        c = clients[i % 2]
        for _ in range(20):
            try:
                r = c.chat.completions.create(model="sim/length", messages=MSG, max_tokens=64)
                with lock:
                    spent.append(r.usage.cost)
            except openai.RateLimitError as e:
                assert e.code == "insufficient_quota"
                return

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, range(concurrency)))
    # A worker gives up at its first refusal, and a refusal may come only from the holds
    # of the others in flight (a hold prices the whole max_tokens, here about 3x the real
    # cost). With nothing in flight any more, what is left of the budget is still usable,
    # on either instance: a finished request's hold must be gone by the time its client
    # sends the next one (it is settled in Redis a moment after the answer went out).
    for i in range(20):
        try:
            r = clients[i % 2].chat.completions.create(model="sim/length", messages=MSG, max_tokens=64)
            spent.append(r.usage.cost)
        except openai.RateLimitError as e:
            assert e.code == "insufficient_quota"
            # Refused with a hold still in flight only if a request failed to settle.
            m = re.search(r"may cost up to \$([0-9.]+)", e.message)
            held, refusal = (float(m.group(1)) if m else 0.0), e.message
            break
    else:
        pytest.fail("the budget never ran out")
    total = sum(spent)
    # Nothing is in flight: the key got all its budget (a key's lone request is admitted
    # while anything is left, so it ends a little over).
    assert held == 0.0, refusal
    assert total >= budget, (total, budget)
    assert total <= budget + concurrency * cost, (total, budget, len(spent))


def test_a_daily_budget_is_shared_per_period_in_redis(pair, redis_server):
    """Both instances count a daily budget from 00:00 UTC (yesterday's spend is not in it),
    in a Redis spend key named by the period that expires an hour after the period ends."""
    a, b = pair
    k = mint(a, budget_usd=1.0, budget_period="daily")
    now = time.time()
    today_ms = int(now // 86400) * 86_400_000
    if today_ms + 86_400_000 - now * 1000 < 60_000:
        pytest.skip("too close to midnight UTC")
    hour = today_ms - 3_600_000
    a.sql(f"INSERT INTO usage_hourly (hour_ms, key_id, model, requests, errors, prompt_tokens, completion_tokens, cached_tokens, cost_usd, priced, unpriced, last_ms) VALUES ({hour}, '{k['id']}', 'sim/length', 1, 0, 10, 10, 0, 100.0, 1, 0, {hour})")
    ca, cb = a.client(api_key=k["key"]), b.client(api_key=k["key"])
    cost = ca.chat.completions.create(model="sim/length", messages=MSG).usage.cost
    assert 0 < cost < 1

    def cli(*args):
        return subprocess.run(["redis-cli", "-p", str(redis_server.port), *args], capture_output=True, text=True,
                              timeout=10).stdout.strip()

    key = f"jinf:{{{k['id']}}}:spend:{today_ms}"
    deadline = time.time() + 5
    while float(cli("GET", key) or 0) < cost * 0.999 and time.time() < deadline:
        time.sleep(0.05)
    assert float(cli("GET", key)) == pytest.approx(cost, rel=1e-6)
    ttl_ms = int(cli("PTTL", key))
    left = today_ms + 86_400_000 - time.time() * 1000
    assert left < ttl_ms <= left + 3_600_000 + 5_000, (ttl_ms, left)
    assert cli("EXISTS", f"jinf:{{{k['id']}}}:spend") == "0", "no lifetime spend for a daily budget"

    httpx.patch(a.url + f"/admin/keys/{k['id']}", headers={"authorization": f"Bearer {a.key}"},
                json={"budget_usd": cost * 1.5}, timeout=10).raise_for_status()
    cb.chat.completions.create(model="sim/length", messages=MSG)  # the other instance: $cost of 1.5·cost spent
    time.sleep(0.3)
    for c in (ca, cb):
        with pytest.raises(openai.RateLimitError) as e:
            c.chat.completions.create(model="sim/length", messages=MSG)
        assert e.value.code == "insufficient_quota" and "starts again at" in str(e.value)


def refused_within(client, seconds, why):
    """Calls with `client` until its key is refused: that must happen within `seconds`."""
    revoked_at = time.monotonic()
    while True:
        try:
            client.chat.completions.create(model="echo", messages=MSG)
        except openai.AuthenticationError:
            return
        assert time.monotonic() - revoked_at < seconds, why
        time.sleep(0.02)


def test_a_key_revoked_on_one_instance_is_refused_by_the_other_within_a_second(pair):
    a, b = pair
    k = mint(a)
    cb = b.client(api_key=k["key"])
    cb.chat.completions.create(model="echo", messages=MSG)  # b has the key cached now
    r = httpx.delete(a.url + f"/admin/keys/{k['id']}", headers={"authorization": f"Bearer {a.key}"}, timeout=10)
    assert r.status_code == 200
    refused_within(cb, 1.0, "b still accepts a key revoked on a")


def test_a_key_revoked_by_the_cli_is_refused_by_running_instances_within_a_second(pair):
    """`jusinfer keys revoke` announces the change through Redis: running instances drop
    their cached copy at once, not when the 2 s cache expires."""
    a, b = pair
    k = mint(a)
    cb = b.client(api_key=k["key"])
    cb.chat.completions.create(model="echo", messages=MSG)  # b has the key cached now
    a.cli("keys", "revoke", k["id"])
    refused_within(cb, 1.0, "b still accepts a key the CLI revoked")


def test_ledger_survives_a_database_outage_then_sigterm(sim, postgres, tmp_path):
    """Stop the database under load, SIGTERM the gateway while it is down, bring both
    back: every request a client saw answered has exactly one ledger row."""
    db = postgres.new_database()
    g = start_gateway(sim.url, tmp_path, database=postgres.url(db))
    c = g.client()
    answered: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def load():
        while not stop.is_set():
            rid = "dur-" + uuid.uuid4().hex
            try:
                c.chat.completions.create(model="echo", messages=MSG, extra_headers={"x-request-id": rid})
            except openai.APIError:
                continue  # not answered: the connection went away at SIGTERM
            with lock:
                answered.append(rid)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.5)
        postgres.stop()
        before = len(answered)
        time.sleep(3)
        assert len(answered) > before, "the gateway keeps serving while the database is down"
        g.proc.p.send_signal(signal.SIGTERM)
        stop.set()
        for t in threads:
            t.join(30)
        assert g.proc.p.wait(30) == 0, g.proc.stderr()
    finally:
        stop.set()
        postgres.start()
    assert "spilled" in g.proc.stderr()
    # The next start replays what was spilled.
    g2 = start_gateway(sim.url, tmp_path, database=postgres.url(db), admin_key=g.key, name="again")
    try:
        ids = set(answered)
        deadline = time.time() + 10
        while time.time() < deadline:
            rows = postgres.psql("SELECT request_id, COUNT(*) FROM usage WHERE request_id LIKE 'dur-%' GROUP BY request_id", db)
            counts = dict(line.split("|") for line in rows.splitlines() if line)
            if ids <= counts.keys():
                break
            time.sleep(0.2)
        missing = ids - counts.keys()
        assert not missing, f"{len(missing)} of {len(ids)} answered requests have no row"
        assert all(v == "1" for v in counts.values()), "exactly one row per request"
        assert len(ids) > 100
    finally:
        g2.proc.stop()


def test_redis_going_away_degrades_to_per_instance_limits(sim, postgres, tmp_path):
    """Redis stops answering: requests keep being served, under per-instance limits."""
    from conftest import Redis

    r = Redis()
    try:
        g = start_gateway(sim.url, tmp_path, database=postgres.url(postgres.new_database()), redis=r.url())
        try:
            k = mint(g, rpm=3)
            c = g.client(api_key=k["key"])
            c.chat.completions.create(model="echo", messages=MSG)
            r.proc.stop()
            # Still served, and still limited: three per minute, now counted in process.
            ok = 0
            for _ in range(6):
                try:
                    c.chat.completions.create(model="echo", messages=MSG)
                    ok += 1
                except openai.RateLimitError:
                    pass
            assert ok == 3, ok
            assert "redis unavailable" in g.proc.stderr()
        finally:
            g.proc.stop()
    finally:
        r.proc.stop()
