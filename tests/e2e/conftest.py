"""End-to-end harness: the real `jusinfer` binary on a free loopback port, in front of the
upstream simulator (`jusinfer-sim`, replaying ../shared/fixtures), driven by the official
OpenAI Python SDK and raw HTTP.

Binaries come from target/release (the test command builds them first); override with
JUSINFER_BIN / JUSINFER_SIM_BIN.
"""

import json
import shutil
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


def _service_account_key():
    """A test Google service-account key: the simulator's token endpoint checks the JWT
    assertions signed with it against its public half."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    path = Path(tempfile.mkdtemp(prefix="jusinfer-sa-")) / "sa_public.pem"
    path.write_bytes(public)
    return private, path


SA_PRIVATE_KEY, SA_PUBLIC_KEY_FILE = _service_account_key()


def service_account_file(sim_url: str, tmp: Path) -> Path:
    """A service-account key file whose token endpoint is the simulator's."""
    f = tmp / "service-account.json"
    f.write_text(json.dumps({
        "type": "service_account", "project_id": "sim-project", "private_key_id": "simkey1",
        "private_key": SA_PRIVATE_KEY, "client_email": "jusinfer@sim-project.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": sim_url + "/token",
    }))
    return f


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
    env = dict(os.environ, JUSINFER_FIXTURES=str(FIXTURES), JUSINFER_SIM_SA_PUBLIC_KEY=str(SA_PUBLIC_KEY_FILE))
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
database = "{database}"
{redis}
max_body_bytes = 1048576
{top}

[circuit_breaker]
{breaker}

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

[providers.gem]
kind = "gemini"
base_url = "{sim}/v1beta"
api_key = "${{SIM_PROVIDER_KEY}}"
timeouts = {{ first_byte = 1.5, idle = 1.5, total = 20 }}

[prices."gem/cache"]
input = 0.3
output = 2.5
cached_input = 0.03

[providers.vtx]
kind = "vertex"
base_url = "{sim}/v1"
project = "sim-project"
location = "us-east5"
credentials_file = "{sa}"
default_max_tokens = 1024
timeouts = {{ first_byte = 1.5, idle = 1.5, total = 20 }}

# Azure OpenAI: the deployments route (a dated api-version) and the v1 route (none).
[providers.az]
kind = "azure"
base_url = "{sim}/"
api_key = "${{SIM_PROVIDER_KEY}}"
api_version = "2024-10-21"
responses = true
deployments = {{ "gpt-4o-mini" = "azure-text", "gpt-4o-mini-tools" = "azure-tools", "text-embedding-3-small" = "embed-small" }}
timeouts = {{ first_byte = 1.5, idle = 1.5, total = 20 }}

[providers.azv1]
kind = "azure"
base_url = "{sim}/openai/v1"
api_key = "${{SIM_PROVIDER_KEY}}"
responses = true
deployments = {{ "gpt-4o-mini" = "azure-usage" }}
timeouts = {{ first_byte = 1.5, idle = 1.5, total = 20 }}

# Amazon Bedrock (Converse), with a Bedrock API key.
[providers.aws]
kind = "bedrock"
base_url = "{sim}"
region = "us-east-1"
api_key = "${{SIM_PROVIDER_KEY}}"
timeouts = {{ first_byte = 1.5, idle = 1.5, total = 20 }}

[providers.claudecache]
kind = "anthropic"
base_url = "{sim}"
api_key = "${{SIM_PROVIDER_KEY}}"
auto_cache = true

[prices."claude/agent-cache"]
input = 3.0
output = 15.0
cached_input = 0.3
cache_write = 3.75

[prices."claudecache/agent-cache"]
input = 3.0
output = 15.0
cached_input = 0.3
cache_write = 3.75

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

# Names real clients send by default (tests/e2e/test_real_clients.py).
[[models]]
name = "claude-sonnet-4-5"
route = ["echo/echo"]

[[models]]
name = "gpt-5.5"
route = ["echo/echo"]

[[models]]
name = "gpt-6.2-sol"
route = ["echo/echo"]

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


def start_gateway(sim_url: str, tmp: Path, extra: str = "", database: str | None = None,
                  redis: str | None = None, admin_key: str | None = None, name: str = "jusinfer",
                  top: str = "", breaker: str = "failures = 1000", env: dict | None = None,
                  wrap: list[str] | None = None) -> Gateway:
    """Starts `serve`; on an empty database it prints the first admin key, else pass
    `admin_key` (a second instance sharing a database). `top`: top-level config keys;
    `breaker`: the `[circuit_breaker]` table (the shared test gateways see many scripted
    failures, so their circuits only open where a test asks); `wrap`: a command the binary
    runs under (`prlimit …`)."""
    port = free_port()
    db = tmp / f"{name}.db"
    config = tmp / f"{name}.toml"
    config.write_text(CONFIG.format(port=port, database=database or f"sqlite://{db}", sim=sim_url, dead=free_port(),
                                    redis=f'redis = "{redis}"' if redis else "", top=top, breaker=breaker,
                                    sa=service_account_file(sim_url, tmp)) + extra)
    env = dict(os.environ, SIM_PROVIDER_KEY=SIM_PROVIDER_KEY, JUSINFER_LOG="info", **(env or {}))
    proc = Proc([*(wrap or []), str(BIN), "serve", "--config", str(config)], env=env, cwd=tmp)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/healthz")
    except RuntimeError:
        proc.stop()
        raise RuntimeError("gateway did not start:\n" + proc.stderr())
    if admin_key is None:
        m = re.search(r"(jinf_[A-Za-z0-9]{40})", proc.stdout())
        assert m, "serve on an empty database prints the first admin key:\n" + proc.stdout()
        admin_key = m.group(1)
    return Gateway(url, admin_key, db, config, proc)


def pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed (scripts/test.sh installs it)")
    return found[-1].parent


class Postgres:
    """A throwaway PostgreSQL cluster on a free loopback port (run as the `postgres` user
    when the tests run as root: the server refuses root)."""

    def __init__(self, root: Path):
        self.bin = pg_bin()
        self.dir = root / "pgdata"
        self.port = free_port()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            subprocess.run(["chown", "-R", "postgres", str(root)], check=True)
        r = subprocess.run([*self.as_user, str(self.bin / "initdb"), "-D", str(self.dir), "-A", "trust", "-U", "jinf",
                            "--no-sync"], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        self.log = root / "pg.log"
        self.start()

    def _ctl(self, *args):
        return subprocess.run([*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.dir), *args],
                              capture_output=True, text=True, timeout=60)

    def start(self):
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        r = self._ctl("-o", opts, "-l", str(self.log), "-w", "start")
        assert r.returncode == 0, r.stdout + r.stderr + Path(self.log).read_text()

    def stop(self):
        self._ctl("-m", "fast", "-w", "stop")

    def psql(self, sql: str, db: str = "postgres") -> str:
        r = subprocess.run([str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "jinf", "-d", db,
                            "-At", "-c", sql], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    def new_database(self) -> str:
        name = f"jinf_{os.urandom(4).hex()}"
        self.psql(f"CREATE DATABASE {name}")
        return name

    def url(self, db: str) -> str:
        return f"postgres://jinf@127.0.0.1:{self.port}/{db}"


@pytest.fixture(scope="session")
def postgres():
    # Not under pytest's tmp dir: its parents are private to root, and the server runs as
    # the postgres user.
    root = Path(tempfile.mkdtemp(prefix="jinf-pg-"))
    root.chmod(0o755)
    pg = Postgres(root)
    yield pg
    pg.stop()
    shutil.rmtree(root, ignore_errors=True)


class Redis:
    def __init__(self):
        self.port = free_port()
        self.start()

    def start(self):
        """Starts (or, after `proc.stop()`, restarts) the server on its port."""
        self.proc = Proc(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no"])
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis did not start: " + self.proc.stderr())

    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/"


@pytest.fixture(scope="session")
def redis_server():
    r = Redis()
    yield r
    r.proc.stop()


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
