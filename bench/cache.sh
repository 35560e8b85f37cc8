#!/usr/bin/env bash
# The exact response cache's cost, in one run on loopback against the mock upstream:
#
# - pass-through: an alias without a cache (the cache-off path), non-streaming and streamed;
# - miss: a cached alias asked with `Cache-Control: no-cache` (upstream, then the entry
#   collected and written: the most a miss costs);
# - hit: a cached alias asked the same request again (no upstream call);
# - with BASE_BIN=path/to/an/older/jusinfer: that build's pass-through too, on the same
#   mock and load, to show what the cache-off path adds (nothing measurable, or not).
#
# Prints requests/s and the gateway's CPU per request (utime+stime from /proc over the
# requests served), and CPU per request of gateway + upstream together (what a hit saves
# the whole system), each as a ratio to the pass-through in the same run.
#
# - with TRACES=1: the pass-through again on a gateway exporting OpenTelemetry traces to a
#   local OTLP sink (what tracing on costs a request; the exporter's thread included).
#
#   bench/cache.sh                      # DUR=5 s per point
#   BASE_BIN=/tmp/old/jusinfer DUR=10 bench/cache.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-5}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --workspace --bins --locked >/dev/null 2>&1

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
TMP=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

MOCK_PORT=$(free_port)
target/release/jusinfer-sim --quiet --listen 127.0.0.1:$MOCK_PORT 2>/dev/null &
MOCK_PID=$!

declare -A URL PID KEY
start() { # name binary extra-toml [env…]
  local port; port=$(free_port)
  cat > "$TMP/$1.toml" <<TOML
listen = "127.0.0.1:$port"
database = "sqlite://$TMP/$1.db"
[providers.mock]
kind = "openai-compatible"
base_url = "http://127.0.0.1:$MOCK_PORT/v1"
api_key = "sk-mock"
models = ["fast"]

[[models]]
name = "plain"
route = ["mock/fast"]

[[models]]
name = "plain-s"
route = ["mock/fast;chunks=20"]
$3
TOML
  KEY[$1]=$("$2" keys create --name bench --config "$TMP/$1.toml" | tail -1)
  env JUSINFER_LOG=warn "${@:4}" "$2" serve --config "$TMP/$1.toml" >/dev/null 2>&1 &
  PID[$1]=$!
  URL[$1]=http://127.0.0.1:$port
  for _ in $(seq 100); do curl -sf "${URL[$1]}/healthz" >/dev/null && break; sleep 0.1; done
}
start new target/release/jusinfer '
[[models]]
name = "cached"
route = ["mock/fast"]
cache = true

[[models]]
name = "cached-s"
route = ["mock/fast;chunks=20"]
cache = true'
[ -n "${BASE_BIN:-}" ] && start base "$BASE_BIN" ""
if [ -n "${TRACES:-}" ]; then
  SINK_PORT=$(free_port)
  python3 - "$SINK_PORT" <<'PY' &
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
  start traced target/release/jusinfer "" OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$SINK_PORT
fi

cpu_ticks() { local t=0; for p in $1; do t=$((t + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $t; }
TICK=$(getconf CLK_TCK)
cat > "$TMP/req.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer " .. os.getenv("KEY")
if os.getenv("CC") ~= "" then wrk.headers["cache-control"] = os.getenv("CC") end
wrk.body = '{"model":"' .. os.getenv("MODEL") .. '","messages":[{"role":"user","content":"Say hello."}]}'
LUA
# name gateway model cache-control -> one JSON row
point() {
  local url=${URL[$2]} pids="${PID[$2]}" a b m1 m2 n rps
  MODEL=$3 KEY=${KEY[$2]} CC=$4 wrk -t2 -c16 -d2s -s "$TMP/req.lua" "$url/v1/chat/completions" >/dev/null
  a=$(cpu_ticks "$pids"); m1=$(cpu_ticks "$MOCK_PID")
  MODEL=$3 KEY=${KEY[$2]} CC=$4 wrk -t2 -c32 -d"${DUR}"s --latency -s "$TMP/req.lua" \
    "$url/v1/chat/completions" > "$TMP/wrk.txt"
  b=$(cpu_ticks "$pids"); m2=$(cpu_ticks "$MOCK_PID")
  n=$(awk '/requests in/ {print $1}' "$TMP/wrk.txt")
  read -r rps _ p99 err < <(python3 bench/wrk_summary.py < "$TMP/wrk.txt")
  echo "{\"name\":\"$1\",\"rps\":$rps,\"p99\":$p99,\"errors\":$err,\"n\":$n,\"gw_ticks\":$((b - a)),\"mock_ticks\":$((m2 - m1))}"
}
# name gateway model -> one JSON row (20-chunk streams)
stream_point() {
  local pids="${PID[$2]}" a b m1 m2 s
  target/release/jusinfer-load stream --url "${URL[$2]}/v1/chat/completions" --key "${KEY[$2]}" \
    --model "$3" --connections 16 --duration 2 >/dev/null
  a=$(cpu_ticks "$pids"); m1=$(cpu_ticks "$MOCK_PID")
  s=$(target/release/jusinfer-load stream --url "${URL[$2]}/v1/chat/completions" --key "${KEY[$2]}" \
    --model "$3" --connections 32 --duration "$DUR")
  b=$(cpu_ticks "$pids"); m2=$(cpu_ticks "$MOCK_PID")
  python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(json.dumps({'name':sys.argv[2],'rps':d['rps'],'p99':d['ttft_ms']['p99'],'errors':d.get('errors',0),'n':d['requests'],'gw_ticks':int(sys.argv[3]),'mock_ticks':int(sys.argv[4])}))" \
    "$s" "$1" "$((b - a))" "$((m2 - m1))"
}

: > "$TMP/rows"
# ROUNDS rounds (default 2), interleaved: drift on a shared machine shows as a spread; the
# base and the new pass-through swap places every other round (the first point of a round
# tends to measure a few % apart).
for round in $(seq "${ROUNDS:-2}"); do
  {
    if [ $((round % 2)) = 0 ]; then point "pass-through (cache off)" new plain ""; fi
    [ -n "${BASE_BIN:-}" ] && point "base pass-through (BASE_BIN)" base plain ""
    if [ $((round % 2)) = 1 ]; then point "pass-through (cache off)" new plain ""; fi
    [ -n "${TRACES:-}" ] && point "pass-through, traces on" traced plain ""
    point "miss (no-cache: upstream + write)" new cached "no-cache"
    point "hit" new cached ""
    stream_point "stream pass-through" new plain-s
    [ -n "${TRACES:-}" ] && stream_point "stream pass-through, traces on" traced plain-s
    stream_point "stream hit" new cached-s
  } | sed "s/^{/{\"round\":$round,/" >> "$TMP/rows"
done

python3 - "$TMP/rows" "$TICK" "$DUR" "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" <<'PY'
import json, sys
from collections import defaultdict
rows, tick, dur, machine = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
by = defaultdict(list)
for r in map(json.loads, open(rows)):
    r["gw_us"] = r["gw_ticks"] / tick * 1e6 / max(r["n"], 1)
    r["all_us"] = (r["gw_ticks"] + r["mock_ticks"]) / tick * 1e6 / max(r["n"], 1)
    by[r["name"]].append(r)
rounds = max(len(v) for v in by.values())
print(f"Machine: {machine} · {dur} s per point, {rounds} interleaved rounds (min–max) · wrk c=32 "
      "(non-streaming), jusinfer-load c=32 (20-chunk streams)\n")
print("| | req/s | gateway CPU per request | × pass-through | gateway + upstream CPU per request | × pass-through |")
print("|---|--:|--:|--:|--:|--:|")
def ref(name):
    return by["stream pass-through" if name.startswith("stream") else "pass-through (cache off)"]
def span(rs, k, fmt):
    lo, hi = min(r[k] for r in rs), max(r[k] for r in rs)
    return fmt(lo) if fmt(lo) == fmt(hi) else f"{fmt(lo)}–{fmt(hi)}"
for name, rs in by.items():
    base = ref(name)
    g = sum(r["gw_us"] for r in rs) / len(rs) / (sum(r["gw_us"] for r in base) / len(base))
    a = sum(r["all_us"] for r in rs) / len(rs) / (sum(r["all_us"] for r in base) / len(base))
    errs = sum(r["errors"] for r in rs)
    print(f"| {name}{f' ({errs} errors)' if errs else ''} | {span(rs, 'rps', lambda v: f'{v:,.0f}')} "
          f"| {span(rs, 'gw_us', lambda v: f'{v:.0f} µs')} | {g:.2f} "
          f"| {span(rs, 'all_us', lambda v: f'{v:.0f} µs')} | {a:.2f} |")
PY
