#!/usr/bin/env bash
# The gateway against the proxy floor, in one run on loopback: the mock upstream direct,
# nginx as a plain reverse proxy in front of it (1 worker, keep-alive upstream pool, no
# buffering: a proxy that parses nothing), the same relay on the gateway's own HTTP crates
# (`jusinfer-floor`: a hyper server relaying through reqwest, parsing nothing), the gateway
# with keys + limits + ledger (SQLite), and the gateway with `auth = "none"`. Prints issue
# 21's table: requests/s and proxy CPU per request, 20-chunk streams/s and CPU per stream, added first-chunk and
# inter-chunk p99 on paced streams, c=256 p99 added over direct and peak RSS, idle RSS, and
# the RSS with HOLD concurrent open streams. Ratios within one run are the figures to
# trust; absolute rates move between runs on a shared VM.
#
#   bench/floor.sh                   # DUR=5 s per point, HOLD=10000 open streams (fewer
#                                    # when `ulimit -n` cannot hold them)
#   DUR=10 HOLD=0 bench/floor.sh     # longer points, no open-streams test
#
# CPU per request: the proxy processes' utime+stime (/proc) over the requests served.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-5}
HOLD=${HOLD:-10000}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
for tool in wrk nginx; do
  command -v $tool >/dev/null || [ -x /usr/sbin/$tool ] || {
    apt-get update -qq && apt-get install -y -qq $tool >/dev/null
  }
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
cargo build --release --workspace --bins --locked >/dev/null 2>&1

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
TMP=$(mktemp -d)
cleanup() {
  [ -f "$TMP/nginx.pid" ] && kill "$(cat "$TMP/nginx.pid")" 2>/dev/null || true
  kill $(jobs -p) 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

MOCK_PORT=$(free_port)
target/release/jusinfer-sim --quiet --listen 127.0.0.1:$MOCK_PORT 2>/dev/null &
MOCK_PID=$!

NGX_PORT=$(free_port)
mkdir -p "$TMP/ngx"
cat > "$TMP/nginx.conf" <<NGX
worker_processes 1;
pid $TMP/nginx.pid;
error_log $TMP/ngx/error.log warn;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path $TMP/ngx/body;
  proxy_temp_path $TMP/ngx/proxy;
  fastcgi_temp_path $TMP/ngx/fastcgi;
  uwsgi_temp_path $TMP/ngx/uwsgi;
  scgi_temp_path $TMP/ngx/scgi;
  upstream mock { server 127.0.0.1:$MOCK_PORT; keepalive 256; }
  server {
    listen 127.0.0.1:$NGX_PORT;
    location / {
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
NGX
"$NGINX" -c "$TMP/nginx.conf" -p "$TMP/ngx" -g 'daemon on;'

declare -A URL PIDS MODEL KEY
URL[mock]=http://127.0.0.1:$MOCK_PORT; PIDS[mock]=$MOCK_PID; MODEL[mock]=fast; KEY[mock]=""
URL[nginx]=http://127.0.0.1:$NGX_PORT; MODEL[nginx]=fast; KEY[nginx]=""
HYPER_PORT=$(free_port)
target/release/jusinfer-floor --listen 127.0.0.1:$HYPER_PORT --upstream http://127.0.0.1:$MOCK_PORT &
PIDS[hyper]=$!; URL[hyper]=http://127.0.0.1:$HYPER_PORT; MODEL[hyper]=fast; KEY[hyper]=""
for gw in keys none; do
  port=$(free_port)
  auth=""; [ $gw = none ] && auth='auth = "none"'
  cat > "$TMP/$gw.toml" <<TOML
listen = "127.0.0.1:$port"
database = "sqlite://$TMP/$gw.db"
$auth
[providers.mock]
kind = "openai-compatible"
base_url = "http://127.0.0.1:$MOCK_PORT/v1"
api_key = "sk-mock"
models = ["fast"]
TOML
  KEY[$gw]=""
  [ $gw = keys ] && KEY[$gw]=$(target/release/jusinfer keys create --name bench --config "$TMP/$gw.toml" | tail -1)
  JUSINFER_LOG=warn target/release/jusinfer serve --config "$TMP/$gw.toml" >/dev/null 2>&1 &
  PIDS[$gw]=$!
  URL[$gw]=http://127.0.0.1:$port
  MODEL[$gw]=mock/fast
  for _ in $(seq 100); do curl -sf "${URL[$gw]}/healthz" >/dev/null && break; sleep 0.1; done
done
for _ in $(seq 50); do [ -s "$TMP/nginx.pid" ] && break; sleep 0.1; done
NGX_MASTER=$(cat "$TMP/nginx.pid")
PIDS[nginx]="$NGX_MASTER $(pgrep -P "$NGX_MASTER" | tr '\n' ' ')"
sleep 1

cpu_ticks() { local t=0; for p in $1; do t=$((t + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $t; }
rss_kb() { local t=0; for p in $1; do t=$((t + $(awk '/VmRSS/ {print $2}' /proc/$p/status))); done; echo $t; }
TICK=$(getconf CLK_TCK)
cat > "$TMP/req.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.body = '{"model":"' .. os.getenv("MODEL") .. '","messages":[{"role":"user","content":"Say hello."}]}'
if os.getenv("KEY") ~= "" then wrk.headers["authorization"] = "Bearer " .. os.getenv("KEY") end
LUA
wrk_run() { # target conns -> "rps p50 p99 errors requests"
  MODEL=${MODEL[$1]} KEY=${KEY[$1]} wrk -t2 -c"$2" -d"${DUR}"s --latency -s "$TMP/req.lua" \
    "${URL[$1]}/v1/chat/completions" > "$TMP/wrk.txt"
  echo "$(python3 bench/wrk_summary.py < "$TMP/wrk.txt") $(awk '/requests in/ {print $1}' "$TMP/wrk.txt")"
}
stream_run() { # target gap_ms -> jusinfer-load's JSON
  target/release/jusinfer-load stream --url "${URL[$1]}/v1/chat/completions" ${KEY[$1]:+--key "${KEY[$1]}"} \
    --model "${MODEL[$1]};chunks=20;gap_ms=$2" --connections 32 --duration "$DUR"
}

TARGETS="mock nginx hyper keys none"
: > "$TMP/rows"
declare -A IDLE
for t in $TARGETS; do IDLE[$t]=$(rss_kb "${PIDS[$t]}"); done
for t in $TARGETS; do # warm-up (connection pools, caches)
  MODEL=${MODEL[$t]} KEY=${KEY[$t]} wrk -t2 -c32 -d2s -s "$TMP/req.lua" "${URL[$t]}/v1/chat/completions" >/dev/null
done
for t in $TARGETS; do
  echo "== $t" >&2
  idle=${IDLE[$t]}
  a=$(cpu_ticks "${PIDS[$t]}"); read -r rps p50 p99 err n < <(wrk_run "$t" 32); b=$(cpu_ticks "${PIDS[$t]}")
  cpu_req=$(python3 -c "print(($b-$a)/$TICK*1e6/max($n,1))")
  a=$(cpu_ticks "${PIDS[$t]}"); s=$(stream_run "$t" 0); b=$(cpu_ticks "${PIDS[$t]}")
  cpu_stream=$(python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(($b-$a)/$TICK*1e6/max(d['requests'],1))" "$s")
  paced=$(stream_run "$t" 5)
  # c=256: RSS sampled every 0.2 s during the run, the peak kept.
  ( peak=0; while [ ! -f "$TMP/stop" ]; do r=$(rss_kb "${PIDS[$t]}"); [ "$r" -gt "$peak" ] && peak=$r; echo $peak > "$TMP/peak"; sleep 0.2; done ) &
  SAMPLER=$!
  read -r rps256 p50_256 p99_256 err256 n256 < <(wrk_run "$t" 256)
  touch "$TMP/stop"; wait $SAMPLER 2>/dev/null || true; rm -f "$TMP/stop"
  peak=$(cat "$TMP/peak")
  echo "{\"target\":\"$t\",\"rps\":$rps,\"p99\":$p99,\"errors\":$err,\"cpu_req_us\":$cpu_req,\"stream\":$s,\"cpu_stream_us\":$cpu_stream,\"paced\":$paced,\"rps256\":$rps256,\"p99_256\":$p99_256,\"errors256\":$err256,\"idle_kb\":$idle,\"peak256_kb\":$peak}" >> "$TMP/rows"
done

declare -A HOLD_RSS=([hyper]=0 [keys]=0)
FIT=$(( ($(ulimit -n) - 1000) / 2 )) # the gateway holds two sockets per stream
if [ "$HOLD" -gt "$FIT" ]; then
  echo "== ulimit -n $(ulimit -n): $FIT open streams instead of $HOLD" >&2
  HOLD=$FIT
fi
if [ "$HOLD" -gt 0 ]; then
  for t in hyper keys; do
    echo "== $HOLD open streams through $t" >&2
    rm -f "$TMP/hold.json"
    target/release/jusinfer-load hold --url "${URL[$t]}/v1/chat/completions" ${KEY[$t]:+--key "${KEY[$t]}"} \
      --model "${MODEL[$t]};chunks=600;gap_ms=100" --connections "$HOLD" --duration 20 > "$TMP/hold.json" &
    HOLDER=$!
    for _ in $(seq 600); do [ -s "$TMP/hold.json" ] && break; sleep 0.1; done
    sleep 2
    HOLD_RSS[$t]=$(rss_kb "${PIDS[$t]}")
    wait $HOLDER || true
    echo "  $(cat "$TMP/hold.json")" >&2
  done
fi

python3 - "$TMP/rows" "$HOLD" "${HOLD_RSS[keys]}" "${HOLD_RSS[hyper]}" "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" "$DUR" "$("$NGINX" -v 2>&1 | cut -d/ -f2)" <<'PY'
import json, sys
rows = {r["target"]: r for r in map(json.loads, open(sys.argv[1]))}
hold, hold_kb, floor_kb = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
machine, dur, ngx = sys.argv[5], sys.argv[6], sys.argv[7]
m, n, h, k, z = rows["mock"], rows["nginx"], rows["hyper"], rows["keys"], rows["none"]
print(f"Machine: {machine} · {dur} s per point · nginx {ngx} · wrk (non-streaming), jusinfer-load (streams)\n")
print("| | mock direct | nginx | hyper + reqwest relay | jusinfer (keys + ledger, SQLite) | jusinfer `auth = \"none\"` |")
print("|---|--:|--:|--:|--:|--:|")
def row(name, f, direct=True):
    cells = [f(r) if (direct or r is not m) else "—" for r in (m, n, h, k, z)]
    print(f"| {name} | " + " | ".join(cells) + " |")
pct = lambda a, b: f" ({100 * a / b:.0f}% of nginx)" if b else ""
row("non-streaming req/s, c=32", lambda r: f"{r['rps']:,.0f}" + (pct(r['rps'], n['rps']) if r in (h, k, z) else ""))
row("proxy CPU per request", lambda r: f"{r['cpu_req_us']:.0f} µs", direct=False)
row("streams/s (20 chunks, no gap), c=32", lambda r: f"{r['stream']['rps']:,.0f}" + (pct(r['stream']['rps'], n['stream']['rps']) if r in (h, k, z) else ""))
row("proxy CPU per stream", lambda r: f"{r['cpu_stream_us']:.0f} µs", direct=False)
row("paced streams (5 ms gaps): added first-chunk p99", lambda r: f"{r['paced']['ttft_ms']['p99'] - m['paced']['ttft_ms']['p99']:.2f} ms", direct=False)
row("paced streams: added inter-chunk p99", lambda r: f"{r['paced']['gap_ms']['p99'] - m['paced']['gap_ms']['p99']:.2f} ms", direct=False)
row("c=256 non-streaming: p99 added over direct", lambda r: f"{r['p99_256'] - m['p99_256']:.1f} ms (errors {r['errors256']})", direct=False)
row("c=256 peak RSS", lambda r: f"{r['peak256_kb'] / 1024:.0f} MB")
row("idle RSS (after start)", lambda r: f"{r['idle_kb'] / 1024:.0f} MB")
if hold_kb:
    print(f"\nRSS with {hold:,} concurrent open streams: gateway (keys) {hold_kb / 1024:.0f} MB"
          f" ({(hold_kb - k['idle_kb']) / hold:.1f} KB per stream over idle), hyper + reqwest relay"
          f" {floor_kb / 1024:.0f} MB ({(floor_kb - h['idle_kb']) / hold:.1f} KB per stream)")
print("\nIssue 21 goals (gateway with keys, this run):\n")
goals = [
    ("CPU per request ≤ 50 µs and ≤ 2× nginx's", k["cpu_req_us"] <= 50 and k["cpu_req_us"] <= 2 * n["cpu_req_us"], f"{k['cpu_req_us']:.0f} µs, {k['cpu_req_us'] / n['cpu_req_us']:.1f}× nginx"),
    ("req/s ≥ 80% of nginx's", k["rps"] >= 0.8 * n["rps"], f"{100 * k['rps'] / n['rps']:.0f}%"),
    ("CPU per 20-chunk stream ≤ 120 µs", k["cpu_stream_us"] <= 120, f"{k['cpu_stream_us']:.0f} µs"),
    ("streams/s ≥ 80% of nginx's", k["stream"]["rps"] >= 0.8 * n["stream"]["rps"], f"{100 * k['stream']['rps'] / n['stream']['rps']:.0f}%"),
    ("added first-chunk p99 ≤ 1 ms", k["paced"]["ttft_ms"]["p99"] - m["paced"]["ttft_ms"]["p99"] <= 1, ""),
    ("added inter-chunk p99 ≤ 0.5 ms", k["paced"]["gap_ms"]["p99"] - m["paced"]["gap_ms"]["p99"] <= 0.5, ""),
    ("c=256 added p99 ≤ nginx's + 5 ms, no errors", k["p99_256"] - m["p99_256"] <= n["p99_256"] - m["p99_256"] + 5 and k["errors256"] == 0, ""),
    ("c=256 peak RSS ≤ 80 MB", k["peak256_kb"] <= 80 * 1024, ""),
    ("idle RSS ≤ 20 MB", k["idle_kb"] <= 20 * 1024, ""),
]
if hold_kb:
    goals.append((f"{hold:,} open streams ≤ 400 MB", hold_kb <= 400 * 1024, ""))
for name, ok, detail in goals:
    print(f"- {'met' if ok else 'NOT met'}: {name}" + (f" ({detail})" if detail else ""))
PY
