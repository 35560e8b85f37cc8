"""End-to-end harness: the real `jusinfer` binary on a free loopback port, in front of the
upstream simulator (`jusinfer-sim`, replaying ../shared/fixtures), driven by the official
OpenAI Python SDK and raw HTTP.

Binaries come from target/release (the test command builds them first); override with
JUSINFER_BIN / JUSINFER_SIM_BIN.
"""

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import openai
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("JUSINFER_BIN", ROOT / "target/release/jusinfer"))
SIM_BIN = Path(os.environ.get("JUSINFER_SIM_BIN", ROOT / "target/release/jusinfer-sim"))
FIXTURES = Path(os.environ.get("JUSINFER_FIXTURES", ROOT.parent / "shared/fixtures"))
SIM_PROVIDER_KEY = "sk-sim-provider-key-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 15.0) -> None:
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                r.read()
                return
        except urllib.error.HTTPError:
            return  # it answered
        except Exception as e:  # noqa: BLE001 - still starting
            last = e
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up: {last}")


class Proc:
    def __init__(self, args, env=None, cwd=None):
        self.log = tempfile.NamedTemporaryFile("w+", prefix="jusinfer-", suffix=".log", delete=False)
        self.out = tempfile.NamedTemporaryFile("w+", prefix="jusinfer-", suffix=".out", delete=False)
        self.p = subprocess.Popen(args, stdout=self.out, stderr=self.log, env=env, cwd=cwd)

    def stdout(self) -> str:
        return Path(self.out.name).read_text()

    def stderr(self) -> str:
        return Path(self.log.name).read_text()

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()


@pytest.fixture(scope="session")
def sim():
    port = free_port()
    env = dict(os.environ, JUSINFER_FIXTURES=str(FIXTURES))
    p = Proc([str(SIM_BIN), "--listen", f"127.0.0.1:{port}"], env=env)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/v1/models")
    yield Sim(url)
    p.stop()


class Sim:
    def __init__(self, url):
        self.url = url

    def requests(self):
        with urllib.request.urlopen(self.url + "/_sim/requests") as r:
            return json.load(r)

    def stats(self):
        with urllib.request.urlopen(self.url + "/_sim/stats") as r:
            return json.load(r)

    def clear(self):
        urllib.request.urlopen(urllib.request.Request(self.url + "/_sim/requests", method="DELETE")).read()

    def last(self):
        reqs = self.requests()
        assert reqs, "the simulator received nothing"
        return reqs[-1]


CONFIG = """
listen = "127.0.0.1:{port}"
database = "sqlite://{db}"
max_body_bytes = 1048576

[providers.sim]
kind = "openai-compatible"
base_url = "{sim}/v1"
api_key = "${{SIM_PROVIDER_KEY}}"
models = ["text", "parallel", "capital", "answer", "length", "cache", "err400", "err401", "err429"]
timeouts = {{ first_byte = 1.5, idle = 1.5, total = 20 }}

[providers.oai]
kind = "openai"
base_url = "{sim}/v1"
api_key = "${{SIM_PROVIDER_KEY}}"

[providers.down]
kind = "openai-compatible"
base_url = "http://127.0.0.1:{dead}/v1"
timeouts = {{ connect = 1 }}

[providers.claude]
kind = "anthropic"
base_url = "{sim}"
api_key = "${{SIM_PROVIDER_KEY}}"
default_max_tokens = 1024
timeouts = {{ first_byte = 1.5, idle = 1.5, total = 20 }}

[prices."sim/length"]
input = 2.5
output = 10.0
cached_input = 1.25

[prices."claude/cache"]
input = 3.0
output = 15.0
cached_input = 0.3
cache_write = 3.75

[prices."claude/cache-max"]
input = 3.0
output = 15.0
cached_input = 0.3
cache_write = 3.75

[[models]]
name = "claude-then-openai"
route = ["claude/text;status=529", "sim/text"]

[[models]]
name = "smart"
route = ["down/text", "sim/text"]

[[models]]
name = "tools-whole"
route = ["sim/parallel;style=whole"]
"""


class Gateway:
    def __init__(self, url, key, db, config, proc):
        self.url = url
        self.key = key
        self.db = db
        self.config = config
        self.proc = proc

    def client(self, **kw) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=kw.pop("api_key", self.key), max_retries=0, **kw)

    def cli(self, *args, check=True):
        r = subprocess.run([str(BIN), *args, "--config", str(self.config)], capture_output=True, text=True,
                           env=dict(os.environ, SIM_PROVIDER_KEY=SIM_PROVIDER_KEY), timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"{args} failed ({r.returncode}): {r.stderr}")
        return r


def start_gateway(sim_url: str, tmp: Path, extra: str = "") -> Gateway:
    port = free_port()
    db = tmp / "jusinfer.db"
    config = tmp / "jusinfer.toml"
    config.write_text(CONFIG.format(port=port, db=db, sim=sim_url, dead=free_port()) + extra)
    env = dict(os.environ, SIM_PROVIDER_KEY=SIM_PROVIDER_KEY, JUSINFER_LOG="info")
    proc = Proc([str(BIN), "serve", "--config", str(config)], env=env, cwd=tmp)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/healthz")
    except RuntimeError:
        proc.stop()
        raise RuntimeError("gateway did not start:\n" + proc.stderr())
    m = re.search(r"(jinf_[A-Za-z0-9]{40})", proc.stdout())
    assert m, "serve on an empty database prints the first admin key:\n" + proc.stdout()
    return Gateway(url, m.group(1), db, config, proc)


@pytest.fixture(scope="session")
def gw(sim, tmp_path_factory):
    g = start_gateway(sim.url, tmp_path_factory.mktemp("gw"))
    yield g
    g.proc.stop()
    # Secrets never reach the log.
    log = g.proc.stderr()
    assert g.key not in log
    assert SIM_PROVIDER_KEY not in log


@pytest.fixture()
def client(gw):
    return gw.client()
