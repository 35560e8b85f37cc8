"""Config reload without a restart: SIGHUP, the admin API and `watch_config`; refused files,
settings that need a restart, in-flight requests, kept connection pools, reload under load."""

import hashlib
import http.server
import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx2 as httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import BIN, SIM_PROVIDER_KEY, Proc, free_port, wait_http

BASE = """listen = "127.0.0.1:{port}"
database = "sqlite://{db}"
{top}
[providers.sim]
kind = "openai-compatible"
base_url = "{sim}/v1"
api_key = "${{SIM_PROVIDER_KEY}}"
{sim_extra}
{providers}
{models}
"""


class Gw:
    def __init__(self, tmp: Path, sim: str, args: tuple = (), serve_port: int | None = None, **kw):
        self.tmp, self.sim, self.port = tmp, sim, free_port()
        self.file = tmp / "jusinfer.toml"
        self.write(**kw)
        env = dict(os.environ, SIM_PROVIDER_KEY=SIM_PROVIDER_KEY, JUSINFER_LOG="info")
        self.proc = Proc([str(BIN), "serve", "--config", str(self.file), *args], env=env, cwd=tmp)
        self.url = f"http://127.0.0.1:{serve_port or self.port}"
        wait_http(self.url + "/healthz")
        m = re.search(r"(jinf_[A-Za-z0-9]{40})", self.proc.stdout())
        assert m, self.proc.stdout()
        self.key = m.group(1)
        self.http = httpx.Client(base_url=self.url, timeout=30,
                                 headers={"authorization": f"Bearer {self.key}"})

    def text(self, top="", providers="", models="", port=None, sim_extra="") -> str:
        return BASE.format(port=port or self.port, db=self.tmp / "j.db", sim=self.sim, top=top,
                           providers=providers, models=models, sim_extra=sim_extra)

    def write(self, **kw) -> str:
        """Writes the file; returns the SHA-256 of its bytes (what /readyz reports)."""
        t = self.text(**kw)
        self.file.write_text(t)
        return hashlib.sha256(t.encode()).hexdigest()

    def hash(self) -> str:
        return self.http.get("/readyz").json()["config"]["hash"]

    def hup_and_wait(self, want: str, timeout: float = 10):
        self.proc.p.send_signal(signal.SIGHUP)
        self.wait_hash(want, timeout)

    def wait_hash(self, want: str, timeout: float = 10):
        end = time.monotonic() + timeout
        while self.hash() != want:
            assert time.monotonic() < end, f"config {want[:12]} not loaded:\n{self.proc.stderr()[-3000:]}"
            time.sleep(0.05)

    def chat(self, model: str, **kw) -> httpx.Response:
        return self.http.post("/v1/chat/completions", json={
            "model": model, "messages": [{"role": "user", "content": "hi"}], **kw})

    def samples(self, name: str, **labels) -> list[float]:
        text = self.http.get("/metrics").text
        return [s.value for fam in text_string_to_metric_families(text) for s in fam.samples
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]

    def metric(self, name: str, **labels) -> float:
        found = self.samples(name, **labels)
        return found[0] if found else 0.0

    def events(self) -> list[dict]:
        """The JSON log lines (stderr is not a terminal: JSON logs)."""
        out = []
        for line in self.proc.stderr().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def usage_rows(self, group: str) -> dict:
        """`/admin/usage` by model, once `group`'s row is written (the ledger batches)."""
        end = time.monotonic() + 10
        while True:
            rows = {r["group"]: r for r in self.http.get("/admin/usage", params={"since": "1h"}).json()["data"]}
            if group in rows or time.monotonic() > end:
                return rows
            time.sleep(0.1)

    def stop(self):
        self.http.close()
        self.proc.stop()


@pytest.fixture()
def gw_factory(sim, tmp_path):
    made = []

    def make(**kw) -> Gw:
        g = Gw(tmp_path, sim.url, **kw)
        made.append(g)
        return g

    yield make
    for g in made:
        g.stop()
        log = g.proc.stderr()
        assert g.key not in log and SIM_PROVIDER_KEY not in log


def alias(name: str, *route: str) -> str:
    return f'[[models]]\nname = "{name}"\nroute = {json.dumps(list(route))}\n'


def price(target: str, inp: float, out: float) -> str:
    return f'[prices."{target}"]\ninput = {inp}\noutput = {out}\n'


def test_sighup_swaps_routes_and_prices_and_readyz_names_the_loaded_file(gw_factory):
    g = gw_factory(models=alias("alpha", "sim/fast"), top="", providers=price("sim/fast", 1.0, 2.0))
    first = hashlib.sha256(g.file.read_bytes()).hexdigest()
    ready = g.http.get("/readyz").json()
    assert ready["status"] == "ready" and ready["config"]["hash"] == first
    assert abs(time.time() - ready["config"]["loaded_at"]) < 120
    r = g.chat("alpha")
    assert r.status_code == 200, r.text
    cost_before = r.json()["usage"]["cost"]
    assert g.chat("beta").status_code == 404

    new = g.write(models=alias("beta", "sim/fast"), providers=price("sim/fast", 100.0, 200.0))
    g.hup_and_wait(new)
    assert g.proc.p.poll() is None, "SIGHUP reloads; it does not end the process"
    r = g.chat("beta")
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["cost"] == pytest.approx(cost_before * 100, rel=1e-6)
    gone = g.chat("alpha")
    assert gone.status_code == 404 and "alpha" in gone.json()["error"]["message"]
    assert g.metric("jusinfer_config_reloads_total", result="applied") == 1
    cfg = g.http.get("/admin/config").json()
    assert cfg["hash"] == new and cfg["restart_required"] == [] and cfg["last_reload_error"] is None
    # The ledger recorded the row served after the reload at the new catalog's price.
    rows = g.usage_rows("beta")
    assert rows["beta"]["cost_usd"] == pytest.approx(cost_before * 100, rel=1e-6)
    assert rows["alpha"]["cost_usd"] == pytest.approx(cost_before, rel=1e-6)
    assert [e["trigger"] for e in g.events() if e.get("message") == "config reloaded"] == ["SIGHUP"]


def test_a_file_that_does_not_validate_is_refused_and_the_running_config_stays(gw_factory):
    g = gw_factory(models=alias("alpha", "sim/fast"))
    loaded = g.hash()
    # A route naming a provider that does not exist: the same message as `config check`.
    bad = g.text(models=alias("alpha", "nowhere/fast"))
    g.file.write_text(bad)
    check = subprocess.run([str(BIN), "config", "check", "--config", str(g.file)],
                           capture_output=True, text=True, timeout=30,
                           env=dict(os.environ, SIM_PROVIDER_KEY=SIM_PROVIDER_KEY))
    assert check.returncode == 2
    message = check.stderr.strip().splitlines()[-1]
    assert re.search(rf"{re.escape(str(g.file))}:\d+: ", message), message

    g.proc.p.send_signal(signal.SIGHUP)
    end = time.monotonic() + 10
    while g.metric("jusinfer_config_reloads_total", result="refused") < 1:
        assert time.monotonic() < end, g.proc.stderr()[-3000:]
        time.sleep(0.05)
    refused = [e for e in g.events() if e.get("message", "").startswith("config reload refused")]
    assert len(refused) == 1 and refused[0]["level"] == "ERROR", refused
    assert message == "error: " + refused[0]["error"], (message, refused)
    assert g.hash() == loaded
    assert g.chat("alpha").status_code == 200

    # The admin API says the same, with 422, and keeps the error on show.
    r = g.http.post("/admin/config/reload")
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_config"
    assert re.search(rf"{re.escape(str(g.file))}:\d+: ", r.json()["error"]["message"])
    assert g.http.get("/admin/config").json()["last_reload_error"] == r.json()["error"]["message"]
    assert g.metric("jusinfer_config_reloads_total", result="refused") == 2
    assert g.metric("jusinfer_config_reloads_total", result="applied") == 0

    # A TOML syntax error is refused too, with its line.
    g.file.write_text(g.text(models=alias("alpha", "sim/fast")) + "\n[[models]\n")
    r = g.http.post("/admin/config/reload")
    assert r.status_code == 422
    assert re.search(rf"{re.escape(str(g.file))}:\d+: ", r.json()["error"]["message"])

    # Mended: the next reload applies and clears the error.
    good = g.write(models=alias("alpha", "sim/fast"), top="log_bodies = false")
    r = g.http.post("/admin/config/reload")
    assert r.status_code == 200, r.text
    assert r.json()["hash"] == good and r.json()["last_reload_error"] is None
    assert g.http.post("/admin/config/reload", headers={"authorization": "Bearer nope"}).status_code == 401


def test_settings_read_at_start_are_reported_as_needing_a_restart(gw_factory):
    g = gw_factory(models=alias("alpha", "sim/fast"), top="max_body_bytes = 1048576\nidle_timeout = 30")
    other_port = free_port()
    g.write(models=alias("alpha", "sim/fast"), port=other_port,
            top="max_body_bytes = 2000\nidle_timeout = 31")
    r = g.http.post("/admin/config/reload")
    assert r.status_code == 200, r.text
    assert r.json()["restart_required"] == ["listen", "idle_timeout"]
    assert g.metric("jusinfer_config_restart_required") == 2
    warned = [e["setting"] for e in g.events() if "takes effect after a restart" in e.get("message", "")]
    assert warned == ["listen", "idle_timeout"], warned
    # Still on the old port; what is read per request took the new value.
    big = g.http.post("/v1/chat/completions", json={
        "model": "alpha", "messages": [{"role": "user", "content": "x" * 5000}]})
    assert big.status_code == 413, big.text
    assert g.chat("alpha").status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{other_port}/healthz", timeout=2)
    # Putting the file back clears the report.
    g.write(models=alias("alpha", "sim/fast"), top="max_body_bytes = 1048576\nidle_timeout = 30")
    assert g.http.post("/admin/config/reload").json()["restart_required"] == []


def test_command_line_overrides_stay_in_force_across_reloads(gw_factory, tmp_path):
    port = free_port()
    db = tmp_path / "cli.db"
    g = gw_factory(args=("--listen", f"127.0.0.1:{port}", "--database", f"sqlite://{db}"),
                   serve_port=port, models=alias("alpha", "sim/fast"))
    new = g.write(models=alias("alpha", "sim/fast") + alias("beta", "sim/fast"))
    r = g.http.post("/admin/config/reload")
    assert r.status_code == 200, r.text
    # The file's `listen` and `database` did not change: nothing waits for a restart.
    assert r.json()["restart_required"] == [] and r.json()["hash"] == new
    assert g.chat("beta").status_code == 200
    assert db.exists() and not (tmp_path / "j.db").exists()


def test_a_stream_in_flight_finishes_on_the_config_it_started_with(gw_factory):
    g = gw_factory(models=alias("slow", "sim/fast;chunks=12;gap_ms=150"),
                   providers=price("sim/fast;chunks=12;gap_ms=150", 1000.0, 2000.0))
    assert g.samples("jusinfer_circuit_state", provider="sim", model="fast;chunks=12;gap_ms=150") == [0.0]
    body = {"model": "slow", "stream": True, "messages": [{"role": "user", "content": "hi"}],
            "stream_options": {"include_usage": True}}
    with g.http.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        assert json.loads(first[6:])["object"] == "chat.completion.chunk"
        # The alias and the provider it used both go away mid-stream.
        new = g.text().replace("[providers.sim]", "[providers.other]")
        new += alias("fresh", "other/fast")
        g.file.write_text(new)
        g.hup_and_wait(hashlib.sha256(new.encode()).hexdigest())
        rest = [line for line in lines if line.startswith("data: ")]
    assert rest[-1] == "data: [DONE]"
    # Paced 150 ms apart: most of the stream came after the new config was in place.
    assert len(rest) >= 5, rest
    chunks = [json.loads(x[6:]) for x in rest[:-1]]
    assert not any("error" in c for c in chunks), chunks
    assert any(c["choices"] and c["choices"][0].get("finish_reason") for c in chunks)
    # Priced by the catalog it was routed with, though the new file has no such price.
    cost = chunks[-1]["usage"]["cost"]
    assert cost > 0, chunks[-1]
    rows = g.usage_rows("slow")
    assert rows["slow"]["cost_usd"] == pytest.approx(cost, rel=1e-6)
    assert g.chat("slow").status_code == 404
    assert g.chat("fresh").status_code == 200
    # The dropped deployment's circuit is no longer tracked; the new one's is.
    assert g.samples("jusinfer_circuit_state", provider="sim") == []
    assert g.samples("jusinfer_circuit_state", provider="other", model="fast") == [0.0]


class PortRecorder(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        self.ports = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.ports.append((self.headers.get("x-tag"), self.client_address[1]))
                body = json.dumps({
                    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(("127.0.0.1", 0), H)


def test_unchanged_providers_keep_their_connections_and_changed_ones_start_afresh(gw_factory):
    up = PortRecorder()
    threading.Thread(target=up.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{up.server_address[1]}/v1"

    def providers(extra_header: str) -> str:
        return (f'[providers.keep]\nkind = "openai-compatible"\nbase_url = "{base}"\n'
                f'headers = {{ "x-tag" = "keep" }}\n'
                f'[providers.change]\nkind = "openai-compatible"\nbase_url = "{base}"\n'
                f'headers = {{ "x-tag" = "change", "x-extra" = "{extra_header}" }}\n')

    try:
        g = gw_factory(providers=providers("1"))
        for m in ("keep/m", "change/m", "keep/m", "change/m"):
            assert g.chat(m).status_code == 200
        before = dict(up.ports)
        assert len(set(p for _, p in up.ports)) == 2, up.ports  # one pooled connection each

        new = g.write(providers=providers("2"), models=alias("added", "keep/m"))
        g.hup_and_wait(new)
        up.ports.clear()
        for m in ("keep/m", "change/m", "added"):
            assert g.chat(m).status_code == 200
        after = up.ports
        assert [p for t, p in after if t == "keep"] == [before["keep"]] * 2, (before, after)
        assert [p for t, p in after if t == "change"] != [before["change"]], (before, after)
        # `sim`, `keep` and the implicit `echo` carried over; `change` rebuilt.
        assert [e["providers_kept"] for e in g.events() if e.get("message") == "config reloaded"] == [3]
    finally:
        up.shutdown()


def test_watch_config_reloads_when_the_file_changes_and_not_when_it_is_touched(gw_factory):
    g = gw_factory(top="watch_config = true", models=alias("alpha", "sim/fast"))
    new = g.write(top="watch_config = true", models=alias("alpha", "sim/fast") + alias("beta", "sim/fast"))
    g.wait_hash(new, timeout=15)
    assert g.chat("beta").status_code == 200
    assert g.metric("jusinfer_config_reloads_total", result="applied") == 1
    # Same bytes, new modification time: nothing to load.
    os.utime(g.file, None)
    time.sleep(3)
    assert g.metric("jusinfer_config_reloads_total", result="applied") == 1
    assert [e["trigger"] for e in g.events() if e.get("message") == "config reloaded"] == ["file changed"]


def test_reload_under_load_fails_no_request(gw_factory):
    g = gw_factory(models=alias("steady", "sim/fast"))
    stop = threading.Event()
    failures, done = [], [0]

    def hammer(stream: bool):
        with httpx.Client(base_url=g.url, timeout=30, headers={"authorization": f"Bearer {g.key}"}) as c:
            while not stop.is_set():
                body = {"model": "steady", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
                try:
                    if stream:
                        with c.stream("POST", "/v1/chat/completions", json=body) as r:
                            text = "".join(r.iter_text())
                            ok = r.status_code == 200 and text.rstrip().endswith("data: [DONE]")
                    else:
                        r = c.post("/v1/chat/completions", json=body)
                        ok = r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
                    if not ok:
                        failures.append(r.status_code)
                except Exception as e:  # noqa: BLE001 - every failure counts
                    failures.append(repr(e))
                done[0] += 1

    threads = [threading.Thread(target=hammer, args=(i % 2 == 1,)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        last = None
        for i in range(12):
            # Each reload rebuilds the route's provider (its headers change) and changes a
            # price, the alias list and a limit.
            extra = alias(f"extra{i}", "sim/fast") + price("sim/fast", 1.0 + i, 2.0)
            last = g.write(models=alias("steady", "sim/fast") + extra,
                           sim_extra=f'headers = {{ "x-reload" = "{i}" }}',
                           top=f"max_concurrent_requests = {1000 + i}")
            g.hup_and_wait(last)
            time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert failures == [], failures[:5]
    assert done[0] > 12, done[0]
    assert [e["providers_kept"] for e in g.events() if e.get("message") == "config reloaded"] == [1] * 12
    assert g.metric("jusinfer_config_reloads_total", result="applied") == 12
    assert g.hash() == last
