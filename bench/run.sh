#!/usr/bin/env bash
# Gateway benchmark on loopback: a fast mock upstream (jusinfer-sim --quiet, both the
# OpenAI and the Anthropic dialect), the gateway in front of it, and the same load against
# the mock directly, so every figure is "added by the gateway". Writes
# bench/out/results.json and prints the markdown tables of BENCHMARKS.md.
#
#   bench/run.sh                  # full run (includes a 10-minute soak)
#   SOAK_SECONDS=60 DUR=5 bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=$ROOT/bench/out
mkdir -p "$OUT"
DUR=${DUR:-10}
SOAK_SECONDS=${SOAK_SECONDS:-600}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --workspace --bins --locked >/dev/null 2>&1

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kb() { awk '/VmRSS/ {print $2}' /proc/"$1"/status; }

MOCK_PORT=$(free_port); GW_PORT=$(free_port)
TMP=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$TMP"' EXIT

target/release/jusinfer-sim --quiet --listen 127.0.0.1:$MOCK_PORT 2>/dev/null &
cat > "$TMP/jusinfer.toml" <<TOML
listen = "127.0.0.1:$GW_PORT"
database = "sqlite://$TMP/bench.db"
[providers.mock]
kind = "openai-compatible"
base_url = "http://127.0.0.1:$MOCK_PORT/v1"
api_key = "sk-mock"
models = ["fast"]
[providers.claude]
kind = "anthropic"
base_url = "http://127.0.0.1:$MOCK_PORT"
api_key = "sk-ant-mock"
TOML
KEY=$(target/release/jusinfer keys create --name bench --config "$TMP/jusinfer.toml" | tail -1)
export KEY
JUSINFER_LOG=warn target/release/jusinfer serve --config "$TMP/jusinfer.toml" >/dev/null 2>&1 &
GW_PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$GW_PORT/healthz" >/dev/null && break; sleep 0.1; done
sleep 1
IDLE_RSS=$(rss_kb $GW_PID)

GW=http://127.0.0.1:$GW_PORT/v1/chat/completions
MOCK=http://127.0.0.1:$MOCK_PORT/v1/chat/completions
lua() { # model -> script path
  local f="$TMP/$(echo "$1" | tr -c 'a-z0-9' _).lua"
  cat > "$f" <<LUA
wrk.method = "POST"
wrk.body = '{"model":"$1","messages":[{"role":"user","content":"Say hello."}]}'
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer " .. os.getenv("KEY")
LUA
  echo "$f"
}
wrk_run() { # url model conns seconds -> "rps p50 p99 errors" (ms)
  local threads=2; [ "$3" -lt 2 ] && threads=1
  wrk -t$threads -c"$3" -d"$4"s --latency -s "$(lua "$2")" "$1" | python3 "$ROOT/bench/wrk_summary.py"
}

echo "== 1000 concurrent open streams" >&2
target/release/jusinfer-load hold --url $GW --key "$KEY" --model "mock/fast;chunks=600;gap_ms=100" --connections 1000 --duration 15 > "$TMP/hold.json" &
HOLD=$!
for _ in $(seq 300); do [ -s "$TMP/hold.json" ] && break; sleep 0.1; done
sleep 2
STREAMS_RSS=$(rss_kb $GW_PID)
HOLD_RES=$(cat "$TMP/hold.json")
wait $HOLD || true
sleep 2

echo "== non-streaming (wrk)" >&2
NONSTREAM=""
for c in 1 32 256; do
  read -r mr m50 m99 me < <(wrk_run $MOCK fast $c $DUR)
  if [ $c = 32 ]; then
    ( sleep $((DUR/2)); rss_kb $GW_PID > "$TMP/load_rss" ) &
  fi
  read -r gr g50 g99 ge < <(wrk_run $GW mock/fast $c $DUR)
  NONSTREAM="$NONSTREAM{\"c\":$c,\"mock\":{\"rps\":$mr,\"p50\":$m50,\"p99\":$m99,\"errors\":$me},\"gw\":{\"rps\":$gr,\"p50\":$g50,\"p99\":$g99,\"errors\":$ge}},"
  echo "  c=$c mock=$mr rps gw=$gr rps (p99 $m99 -> $g99 ms)" >&2
done
LOAD_RSS=$(cat "$TMP/load_rss")

echo "== translated: OpenAI client -> Anthropic-shaped mock, 32 connections" >&2
read -r pr p50 p99 pe < <(wrk_run $GW mock/fast 32 $DUR)
read -r tr t50 t99 te < <(wrk_run $GW claude/fast 32 $DUR)
TRANSLATED="{\"passthrough\":{\"rps\":$pr,\"p50\":$p50,\"p99\":$p99,\"errors\":$pe},\"translated\":{\"rps\":$tr,\"p50\":$t50,\"p99\":$t99,\"errors\":$te}}"
echo "  pass-through=$pr rps translated=$tr rps" >&2

echo "== streaming, 20 chunks 5 ms apart, 32 connections" >&2
SM=$(target/release/jusinfer-load stream --url $MOCK --model "fast;chunks=20;gap_ms=5" --connections 32 --duration $DUR)
SG=$(target/release/jusinfer-load stream --url $GW --key "$KEY" --model "mock/fast;chunks=20;gap_ms=5" --connections 32 --duration $DUR)
ST=$(target/release/jusinfer-load stream --url $GW --key "$KEY" --model "claude/fast;chunks=20;gap_ms=5" --connections 32 --duration $DUR)

echo "== soak: ${SOAK_SECONDS}s at 32 connections" >&2
SOAK_START_RSS=$(rss_kb $GW_PID)
wrk -t2 -c32 -d"${SOAK_SECONDS}"s -s "$(lua mock/fast)" $GW > "$TMP/soak.txt" &
WRK=$!
SAMPLES=""
STEP=$(( SOAK_SECONDS / 10 )); [ $STEP -lt 1 ] && STEP=1
for _ in $(seq 1 10); do sleep $STEP; SAMPLES="$SAMPLES$(rss_kb $GW_PID),"; done
wait $WRK || true
SOAK_RPS=$(awk '/Requests\/sec/ {print $2}' "$TMP/soak.txt")

echo "== highest constant rate with p99 < 5 ms" >&2
best_rate() { # url key model
  local best=0
  for r in 250 500 1000 1500 2000 3000 4000 5000 6000 8000 10000 12000 15000; do
    local res; res=$(target/release/jusinfer-load rate --url "$1" ${2:+--key "$2"} --model "$3" --rate $r --duration 5)
    local ok; ok=$(echo "$res" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(int(d["latency_ms"]["p99"]<5 and d["errors"]==0 and d["achieved_rps"]>0.95*d["target_rps"]))')
    [ "$ok" = 1 ] || break
    best=$r
  done
  echo $best
}
RATE_MOCK=$(best_rate $MOCK "" fast)
RATE_GW=$(best_rate $GW "$KEY" mock/fast)

cat > "$OUT/results.json" <<JSON
{"date":"$(date -u +%F)","machine":"$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)",
 "duration_s":$DUR,"nonstream":[${NONSTREAM%,}],"translated":$TRANSLATED,
 "stream_mock":$SM,"stream_gw":$SG,"stream_translated":$ST,
 "rate_p99_under_5ms":{"mock":$RATE_MOCK,"gw":$RATE_GW},
 "rss_kb":{"idle":$IDLE_RSS,"load_32":$LOAD_RSS,"streams_1000":$STREAMS_RSS,"soak_start":$SOAK_START_RSS,"soak_samples":[${SAMPLES%,}]},
 "hold":$HOLD_RES,"soak":{"seconds":$SOAK_SECONDS,"rps":${SOAK_RPS:-0}}}
JSON
python3 bench/report.py "$OUT/results.json"
