"""`jusinfer check`, the conformance probe, as users run it: against the running gateway for
every provider kind (openai-compatible, anthropic, gemini, azure, bedrock, echo) in every dialect, where every
protocol case must pass; against broken simulated providers, where it must fail the
right cases; and its outputs (--json, --junit, --save-dir, the plain table, exit codes)."""

import json
import subprocess
import xml.etree.ElementTree as ET

import pytest

from conftest import BIN

OPENAI_CASES = ["chat", "stream", "stream usage", "stream tool call", "tool call", "parallel tool calls",
                "tool result", "json mode", "json schema", "max_tokens", "unknown field", "seed, temperature",
                "bad key", "bad request", "unknown model"]
ANTHROPIC_CASES = ["messages", "stream", "stream tool use", "tool use", "tool result", "max_tokens",
                   "unknown field", "bad key", "bad request", "unknown model"]
GEMINI_CASES = ["generateContent", "stream", "stream function call", "function call", "function response",
                "maxOutputTokens", "countTokens", "bad key", "bad request", "unknown model"]
STREAMS = {"stream", "stream usage", "stream tool call", "parallel tool calls"}


def check(base_url, key, model, *extra, dialect="openai"):
    r = subprocess.run([str(BIN), "check", "--base-url", base_url, "--api-key", key, "--model", model,
                        "--dialect", dialect, "--timeout", "10", *extra], capture_output=True, text=True, timeout=300)
    return r


def verdicts(r):
    out = json.loads(r.stdout)
    return {c["name"]: c["verdict"] for c in out["cases"]}, out


@pytest.mark.parametrize("dialect", ["openai", "anthropic", "gemini"])
@pytest.mark.parametrize("model", ["sim/probe", "claude/probe", "gem/probe", "az/probe", "azv1/probe", "aws/probe",
                                   "echo"])
def test_the_gateway_passes_every_protocol_case(gw, model, dialect):
    base = gw.url + "/v1" if dialect == "openai" else gw.url
    r = check(base, gw.key, model, "--json", dialect=dialect)
    v, out = verdicts(r)
    assert r.returncode == 0, r.stdout + r.stderr
    assert list(v) == {"openai": OPENAI_CASES, "anthropic": ANTHROPIC_CASES, "gemini": GEMINI_CASES}[dialect]
    assert out["summary"]["fail"] == 0 and "FAIL" not in v.values(), out
    # Only model-dependent content may warn; the protocol cases always pass.
    for case in ["chat", "messages", "generateContent", "stream", "stream usage", "bad key", "bad request",
                 "unknown model", "unknown field", "max_tokens", "tool result", "function response",
                 "countTokens"]:
        if case in v:
            assert v[case] == "PASS", (case, out)


@pytest.mark.parametrize("fault,fails", [
    ("whole_noindex", {"stream tool call", "parallel tool calls"}),
    ("bad_args", {"stream tool call", "parallel tool calls"}),
    ("no_done", STREAMS),
    ("double_finish", STREAMS),
    ("no_usage", {"chat", "stream usage"}),
    ("bad_errors", {"bad key", "bad request"}),
    ("json_ct", STREAMS),
    ("split_line", STREAMS),
])
def test_each_broken_provider_fails_exactly_its_cases(sim, fault, fails):
    r = check(sim.url + "/v1", "sk-anything", f"probe;fault={fault}", "--json")
    v, out = verdicts(r)
    assert r.returncode == 1, r.stderr
    assert {k for k, x in v.items() if x == "FAIL"} == fails, out


def test_a_faithful_replay_of_recorded_traffic_passes(sim):
    for dialect, base in [("openai", sim.url + "/v1"), ("anthropic", sim.url), ("gemini", sim.url)]:
        r = check(base, "sk-anything", "probe", "--json", dialect=dialect)
        assert r.returncode == 0, r.stdout
        assert json.loads(r.stdout)["summary"]["fail"] == 0


def test_the_gateway_repairs_what_it_can(gw):
    """A provider that sends whole calls without index, no [DONE], a doubled finish or
    errors in its own shape: clients of the gateway still see the standard protocol."""
    for fault in ["whole_noindex", "no_done", "double_finish", "bad_errors"]:
        r = check(gw.url + "/v1", gw.key, f"sim/probe;fault={fault}", "--json")
        assert r.returncode == 0, (fault, r.stdout)


def test_outputs_table_junit_and_saved_bytes(sim, tmp_path):
    junit = tmp_path / "check.xml"
    saved = tmp_path / "raw"
    r = check(sim.url + "/v1", "sk-secret-do-not-save", "probe;fault=no_done", "--junit", str(junit),
              "--save-dir", str(saved))
    assert r.returncode == 1
    assert "\x1b[" not in r.stdout, "plain when piped"
    rows = {line.split()[0] for line in r.stdout.splitlines()[3:] if line.strip()}
    assert "chat" in rows
    assert "stream" in r.stdout and "FAIL" in r.stdout and "did not end with data: [DONE]" in r.stdout
    assert "0 failed" not in r.stdout and "4 failed" in r.stdout
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("tests") == str(len(OPENAI_CASES)) and suite.get("failures") == "4"
    failed = {tc.get("name") for tc in suite.iter("testcase") if tc.find("failure") is not None}
    assert failed == STREAMS
    files = sorted(p.name for p in saved.iterdir())
    assert "02-stream-1.request" in files and "02-stream-1.response" in files
    req = (saved / "02-stream-1.request").read_bytes()
    assert b"[redacted]" in req and b"sk-secret-do-not-save" not in req
    assert b'"stream":true' in req
    resp = (saved / "02-stream-1.response").read_bytes()
    assert resp.startswith(b"HTTP/1.1 200") and b"data: " in resp and b"[DONE]" not in resp


def test_a_dead_endpoint_fails_fast(tmp_path):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    r = check(f"http://127.0.0.1:{port}/v1", "k", "m", "--json")
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert out["summary"]["fail"] == len(OPENAI_CASES)
    assert "cannot connect" in out["cases"][0]["evidence"]


def test_usage_errors_exit_2():
    r = subprocess.run([str(BIN), "check", "--base-url", "http://127.0.0.1:9/v1", "--api-key", "k", "--model", "m",
                        "--timeout=0"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--timeout" in r.stderr
