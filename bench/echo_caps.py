"""Echo's worst requests (issue 16): time to the last byte, bytes sent and the gateway's
RSS for a 3,000,000 minLength, a 1e9 minItems and n=128 streamed over a 1 MB prompt.

    .venv/bin/python bench/echo_caps.py      (after cargo build --release --workspace --bins)
"""
import json
import os
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
from conftest import start_gateway, Proc, free_port, wait_http, FIXTURES, SIM_BIN
from pathlib import Path
port = free_port()
sim = Proc([str(SIM_BIN), "--listen", f"127.0.0.1:{port}"], env=dict(os.environ, JUSINFER_FIXTURES=str(FIXTURES)))
wait_http(f"http://127.0.0.1:{port}/v1/models")
tmp = Path(tempfile.mkdtemp(prefix="jinf-echo-"))
g = start_gateway(f"http://127.0.0.1:{port}", tmp)
def post(body):
    req = urllib.request.Request(g.url + "/v1/chat/completions", data=json.dumps(body).encode(), method="POST")
    req.add_header("content-type", "application/json"); req.add_header("authorization", f"Bearer {g.key}")
    t = time.perf_counter(); total = 0
    with urllib.request.urlopen(req, timeout=120) as r:
        while c := r.read(1 << 20): total += len(c)
    return time.perf_counter() - t, total
def rss():
    for l in Path(f"/proc/{g.proc.p.pid}/status").read_text().splitlines():
        if l.startswith("VmRSS"): return int(l.split()[1])
tool = lambda schema: {"model":"echo","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":schema}}],"tool_choice":"required"}
print("minLength 3e6: %.3fs %d bytes" % post(tool({"type":"object","properties":{"s":{"type":"string","minLength":3000000}}})))
print("minItems 1e9: %.3fs %d bytes" % post(tool({"type":"object","properties":{"a":{"type":"array","minItems":1000000000,"items":{"type":"integer"}}}})))
r0 = rss()
print("n=128 stream 1MB prompt: %.3fs %d bytes" % post({"model":"echo","n":128,"stream":True,"messages":[{"role":"user","content":"word "*200000}]}), "rss before/after KiB", r0, rss())
g.proc.stop(); sim.stop()
