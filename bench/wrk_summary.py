"""Reads `wrk --latency` output on stdin; prints "req/s p50_ms p99_ms non_2xx"."""
import re
import sys

t = sys.stdin.read()


def ms(v, u):
    return float(v) * {"us": 0.001, "ms": 1, "s": 1000}[u]


rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
p = {m.group(1): ms(m.group(2), m.group(3)) for m in re.finditer(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)", t, re.M)}
errs = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
print(rps, p["50"], p["99"], errs.group(1) if errs else 0)
