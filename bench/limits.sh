#!/usr/bin/env bash
# What keys, limits and the ledger cost on the request path: non-streaming requests at 32
# connections through the gateway to a fast mock upstream, four setups, interleaved over
# several rounds (medians reported):
#
#   sqlite/none    SQLite, auth = "none" (the ledger still writes a row per request)
#   sqlite/keys    SQLite, a key with RPM, TPM and budget set (in-process limiters)
#   pg/none        PostgreSQL + Redis configured, auth = "none"
#   pg/keys        PostgreSQL + Redis, the same limited key (shared limits in Redis)
#
#   bench/limits.sh                 # DUR=10 ROUNDS=3
#   DUR=5 ROUNDS=2 bench/limits.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DUR=${DUR:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-32}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v redis-server >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql redis-server >/dev/null; }
cargo build --release --workspace --bins --locked >/dev/null 2>&1

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
TMP=$(mktemp -d /tmp/jinf-bench-XXXXXX)
chmod 755 "$TMP"
PGBIN=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | tail -1)")
AS_PG=(); [ "$(id -u)" = 0 ] && AS_PG=(runuser -u postgres --)
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  [ -d "$TMP/pg" ] && "${AS_PG[@]}" "$PGBIN/pg_ctl" -D "$TMP/pg" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT

MOCK_PORT=$(free_port); PG_PORT=$(free_port); REDIS_PORT=$(free_port)
target/release/jusinfer-sim --quiet --listen 127.0.0.1:$MOCK_PORT 2>/dev/null &
redis-server --port $REDIS_PORT --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 &
mkdir -p "$TMP/pgroot"; [ ${#AS_PG[@]} -gt 0 ] && chown postgres "$TMP/pgroot" "$TMP"
"${AS_PG[@]}" "$PGBIN/initdb" -D "$TMP/pg" -A trust -U jinf --no-sync >/dev/null
"${AS_PG[@]}" "$PGBIN/pg_ctl" -D "$TMP/pg" -l "$TMP/pgroot/log" -w \
  -o "-p $PG_PORT -k $TMP/pg -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
"$PGBIN/psql" -h 127.0.0.1 -p $PG_PORT -U jinf -d postgres -qc "CREATE DATABASE bench" >/dev/null

declare -A URL KEYS
start() { # name database auth redis -> gateway url in URL[name], key in KEYS[name]
  local name=$1 db=$2 auth=$3 redis=$4 port; port=$(free_port)
  cat > "$TMP/$name.toml" <<TOML
listen = "127.0.0.1:$port"
database = "$db"
auth = "$auth"
$redis
[providers.mock]
kind = "openai-compatible"
base_url = "http://127.0.0.1:$MOCK_PORT/v1"
api_key = "sk-mock"
models = ["fast"]
[prices."mock/fast"]
input = 0.01
output = 0.01
TOML
  KEYS[$name]=none
  if [ "$auth" = keys ]; then
    KEYS[$name]=$(target/release/jusinfer keys create --name bench --rpm 100000000 --tpm 100000000000 \
      --budget-usd 1000000 --config "$TMP/$name.toml" | tail -1)
  fi
  (cd "$TMP" && JUSINFER_LOG=warn exec "$ROOT/target/release/jusinfer" serve --config "$TMP/$name.toml" >/dev/null 2>&1) &
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
  URL[$name]="http://127.0.0.1:$port/v1/chat/completions"
}
REDIS="redis = \"redis://127.0.0.1:$REDIS_PORT/\""
PG="postgres://jinf@127.0.0.1:$PG_PORT/bench"
start sqlite_none "sqlite://$TMP/none.db" none ""
start sqlite_keys "sqlite://$TMP/keys.db" keys ""
start pg_none "$PG" none "$REDIS"
start pg_keys "$PG" keys "$REDIS"

run() { # name -> "rps p50 p99 non2xx"
  local lua="$TMP/$1.lua"
  cat > "$lua" <<LUA
wrk.method = "POST"
wrk.body = '{"model":"mock/fast","messages":[{"role":"user","content":"Say hello."}]}'
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer ${KEYS[$1]}"
LUA
  wrk -t2 -c"$CONNS" -d"$DUR"s --latency -s "$lua" "${URL[$1]}" | python3 "$ROOT/bench/wrk_summary.py"
}

NAMES=(sqlite_none sqlite_keys pg_none pg_keys)
for name in "${NAMES[@]}"; do run "$name" >/dev/null; done # warm-up
: > "$TMP/results"
for r in $(seq "$ROUNDS"); do
  for name in "${NAMES[@]}"; do
    echo "$name $(run "$name")" | tee -a "$TMP/results" >&2
  done
done
python3 - "$TMP/results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, rps, p50, p99, errs = line.split()
    rows.setdefault(name, []).append((float(rps), float(p50), float(p99), int(errs)))
med = {n: [statistics.median(x[i] for x in v) for i in range(3)] + [sum(x[3] for x in v)] for n, v in rows.items()}
print("| setup | req/s (median) | p50 ms | p99 ms | non-2xx | vs auth=none |")
print("|---|---:|---:|---:|---:|---:|")
for n in ["sqlite_none", "sqlite_keys", "pg_none", "pg_keys"]:
    rps, p50, p99, errs = med[n]
    base = med[n.replace("keys", "none")][0]
    print(f"| {n.replace('_', '/')} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {errs} | {100 * rps / base:.0f}% |")
PY
