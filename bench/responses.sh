#!/usr/bin/env bash
# The Responses API's cost over Chat Completions on loopback: the same fast mock upstream
# (jusinfer-sim `fast`, 20 content chunks per stream), the same gateway, wrk at 16
# connections, rounds interleaved. Rows: Chat Completions (pass-through), Responses
# translated to Chat without storing (`store: false`), and storing every Response in the
# SQLite store (the default). Prints a markdown table.
#
#   bench/responses.sh            # DUR=10 ROUNDS=3 CONNS=16
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DUR=${DUR:-10}; ROUNDS=${ROUNDS:-3}; CONNS=${CONNS:-16}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --workspace --bins --locked >/dev/null 2>&1
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
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
TOML
KEY=$(target/release/jusinfer keys create --name bench --config "$TMP/jusinfer.toml" | tail -1)
export KEY
JUSINFER_LOG=warn target/release/jusinfer serve --config "$TMP/jusinfer.toml" >/dev/null 2>&1 &
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$GW_PORT/healthz" >/dev/null && break; sleep 0.1; done
sleep 1
script() { # name body
  cat > "$TMP/$1.lua" <<LUA
wrk.method = "POST"
wrk.body = '$2'
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer " .. os.getenv("KEY")
LUA
}
script chat '{"model":"mock/fast","messages":[{"role":"user","content":"Say hello."}]}'
script resp_nostore '{"model":"mock/fast","input":"Say hello.","store":false}'
script resp_store '{"model":"mock/fast","input":"Say hello."}'
script chat_s '{"model":"mock/fast","stream":true,"messages":[{"role":"user","content":"Say hello."}]}'
script resp_nostore_s '{"model":"mock/fast","stream":true,"input":"Say hello.","store":false}'
script resp_store_s '{"model":"mock/fast","stream":true,"input":"Say hello."}'
for round in $(seq "$ROUNDS"); do
  for s in chat resp_nostore resp_store chat_s resp_nostore_s resp_store_s; do
    path=/v1/chat/completions; [[ $s == resp* ]] && path=/v1/responses
    read -r rps p50 p99 errs < <(wrk -t2 -c"$CONNS" -d"$DUR"s --latency -s "$TMP/$s.lua" \
      "http://127.0.0.1:$GW_PORT$path" | python3 "$ROOT/bench/wrk_summary.py")
    echo "$s $round $rps $p50 $p99 $errs" >> "$TMP/rows"
  done
done
python3 - "$TMP/rows" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    s, _, rps, p50, p99, errs = line.split()
    rows.setdefault(s, []).append((float(rps), float(p50), float(p99), int(errs)))
names = {"chat": "Chat Completions", "resp_nostore": "Responses, store: false",
         "resp_store": "Responses, stored (SQLite)"}
print("| request | stream | req/s (median of rounds) | range | p50 ms | p99 ms | non-2xx |")
print("|---|---|---|---|---|---|---|")
for s, r in rows.items():
    base = s.removesuffix("_s")
    rps = [x[0] for x in r]
    print(f"| {names[base]} | {'yes' if s.endswith('_s') else 'no'} | {statistics.median(rps):,.0f} | "
          f"{min(rps):,.0f}–{max(rps):,.0f} | {statistics.median(x[1] for x in r):.2f} | "
          f"{statistics.median(x[2] for x in r):.2f} | {sum(x[3] for x in r)} |")
PY
