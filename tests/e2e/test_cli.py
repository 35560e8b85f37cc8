"""The command line: keys, config check, exit codes, errors that say where and what."""

import json
import os
import subprocess

from conftest import BIN


def run(*args, cwd=None, env=None):
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, cwd=cwd, timeout=60,
                          env=dict(os.environ, **(env or {})))


def test_keys_create_list_revoke(tmp_path):
    db = f"sqlite://{tmp_path}/k.db"
    r = run("keys", "create", "--name", "ci", "--rpm", "10", "--tpm", "5000", "--budget-usd", "2.5", "--models", "gpt-*,echo",
            "--metadata", '{"team":"search"}', "--expires-in", "30d", "--database", db, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    key = r.stdout.strip().splitlines()[-1]
    assert key.startswith("jinf_") and len(key) == 45 and key[5:].isalnum()
    r = run("keys", "create", "--name", "second", "--admin", "--json", "--database", db, cwd=tmp_path)
    created = json.loads(r.stdout)
    assert set(created) >= {"id", "key", "prefix"}
    listed = json.loads(run("keys", "list", "--json", "--database", db, cwd=tmp_path).stdout)
    assert [k["name"] for k in listed] == ["ci", "second"]
    ci = listed[0]
    assert (ci["rpm"], ci["tpm"], ci["budget_usd"], ci["models"], ci["metadata"], ci["spend_usd"]) == \
        (10, 5000, 2.5, ["gpt-*", "echo"], {"team": "search"}, 0)
    assert key not in json.dumps(listed) and "hash" not in listed[0], "only prefixes are listed"
    table = run("keys", "list", "--database", db, cwd=tmp_path).stdout
    assert "active" in table and key not in table
    assert "0.0000 / 2.50" in table and "5000" in table
    r = run("keys", "revoke", created["id"], "--database", db, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "revoked" in run("keys", "list", "--database", db, cwd=tmp_path).stdout
    r = run("keys", "revoke", "nope", "--database", db, cwd=tmp_path)
    assert r.returncode == 1 and "no live key" in r.stderr
    r = run("keys", "create", "--name", "x", "--expires-in", "soon", "--database", db, cwd=tmp_path)
    assert r.returncode == 2 and "--expires-in" in r.stderr
    r = run("keys", "create", "--name", "x", "--metadata", "[1]", "--database", db, cwd=tmp_path)
    assert r.returncode == 2 and "--metadata" in r.stderr


def test_config_check_accepts_a_good_config(tmp_path):
    cfg = tmp_path / "j.toml"
    cfg.write_text('[providers.local]\nkind = "openai-compatible"\nbase_url = "${LOCAL_URL:-http://127.0.0.1:8000/v1}"\n'
                   'models = ["qwen3-8b"]\n\n[[models]]\nname = "smart"\nroute = ["local/qwen3-8b", "echo/echo"]\n')
    r = run("config", "check", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert "smart" in r.stdout and "local/qwen3-8b | echo/echo" in r.stdout
    assert "http://127.0.0.1:8000/v1" in r.stdout


def test_config_errors_name_file_line_and_expectation(tmp_path):
    cases = [
        ('listen = "127.0.0.1:1"\n\n[providers.a]\nkind = "openai"\nbase_ur = "x"\n', ":5:", "base_ur"),
        ('[providers.a]\nkind = "palm"\n', ":2:", "openai-compatible"),
        ('[[models]]\nname = "m"\nroute = ["ghost/x"]\n', ":3:", "unknown provider"),
        ('lissen = "x"\n', ":1:", "listen"),
    ]
    for text, line, needle in cases:
        cfg = tmp_path / "bad.toml"
        cfg.write_text(text)
        r = run("config", "check", "--config", str(cfg))
        assert r.returncode == 2, (text, r.stderr)
        assert f"bad.toml{line}" in r.stderr and needle in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, "one clear line"
        r = run("serve", "--config", str(cfg))
        assert r.returncode == 2


def test_jusinfer_config_env_and_defaults(tmp_path):
    r = run("config", "check", cwd=tmp_path, env={"JUSINFER_CONFIG": "", "GROQ_API_KEY": "gsk_test"})
    assert r.returncode == 0 and "built-in defaults" in r.stdout
    assert "groq" in r.stdout and "echo" in r.stdout
    assert "gsk_test" not in r.stdout, "provider keys are never printed"
    r = run("keys", "list", "--bogus")
    assert r.returncode == 2


def test_serve_mints_the_admin_key_only_once(tmp_path):
    import re
    import signal
    from conftest import free_port, wait_http
    db = f"sqlite://{tmp_path}/s.db"
    keys = []
    for _ in range(2):
        port = free_port()
        p = subprocess.Popen([str(BIN), "serve", "--listen", f"127.0.0.1:{port}", "--database", db],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=tmp_path)
        wait_http(f"http://127.0.0.1:{port}/healthz")
        p.send_signal(signal.SIGTERM)
        out = p.communicate(timeout=15)[0].decode()
        assert p.returncode == 0
        keys.append(re.findall(r"jinf_[A-Za-z0-9]{40}", out))
    assert len(keys[0]) == 1 and keys[1] == []


def test_models_lists_routes_with_prices(tmp_path):
    cfg = tmp_path / "m.toml"
    cfg.write_text('[providers.oai]\nkind = "openai"\napi_key = "x"\nmodels = ["gpt-4o-2024-08-06"]\n\n'
                   '[providers.local]\nkind = "openai-compatible"\nbase_url = "http://127.0.0.1:9/v1"\nmodels = ["qwen3-8b"]\n\n'
                   '[prices."local/qwen3-8b"]\ninput = 0.05\noutput = 0.1\n')
    r = run("models", "--config", str(cfg), "--json")
    assert r.returncode == 0, r.stderr
    got = {m["id"]: m for m in json.loads(r.stdout)}
    assert got["gpt-4o-2024-08-06"]["price_per_mtok"]["input"] == 2.5, "dated names fall back to the catalog entry"
    assert got["qwen3-8b"]["price_per_mtok"]["output"] == 0.1, "config overrides the catalog"
    assert got["echo"]["price_per_mtok"] is None
    assert "x" not in json.dumps(got["gpt-4o-2024-08-06"]["route"])
