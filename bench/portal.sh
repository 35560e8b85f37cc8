#!/usr/bin/env bash
# The developer portal's pages over a large ledger: ROWS usage rows (default 1,000,000)
# spread over 30 days, 50 keys and 12 models, in the SQLite store; each page fetched
# REPEAT times (default 7) by curl with a signed-in session cookie. Prints a markdown
# table: median and worst server time, and the bytes sent. Also the weight of the page
# assets (HTML, CSS, script).
#
#   bench/portal.sh              # ROWS=1000000 REPEAT=7
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-1000000}; REPEAT=${REPEAT:-7}
cargo build --release --bin jusinfer --locked >/dev/null 2>&1
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
GW_PORT=$(free_port)
TMP=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$TMP"' EXIT
cat > "$TMP/jusinfer.toml" <<TOML
listen = "127.0.0.1:$GW_PORT"
database = "sqlite://$TMP/bench.db"
TOML
KEY=$(target/release/jusinfer keys create --name bench --admin --config "$TMP/jusinfer.toml" | tail -1)

# The ledger, written straight into the database (as the gateway's batches would).
python3 - "$TMP/bench.db" "$ROWS" <<'PY'
import random, sqlite3, sys, time
db, rows = sys.argv[1], int(sys.argv[2])
con = sqlite3.connect(db)
now = int(time.time() * 1000)
keys = [f"key_bench{i:03d}" for i in range(50)]
for i, k in enumerate(keys):
    con.execute("INSERT INTO keys (id, name, prefix, hash, admin, created_at, models, metadata) "
                "VALUES (?, ?, ?, ?, 0, ?, '[]', '{}')", (k, f"team-{i}", f"jinf_b{i:07d}", f"h{i}", now // 1000))
models = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5", "claude-haiku-4-5", "llama-3.3-70b",
          "qwen-2.5-72b", "deepseek-v3", "mistral-large", "o4-mini", "gpt-4.1", "gemma-3", "text"]
rng = random.Random(7)
def gen():
    for i in range(rows):
        status = 200 if rng.random() > 0.03 else rng.choice([400, 429, 502])
        p, c = rng.randint(10, 4000), rng.randint(1, 1500)
        yield (f"row{i}", now - rng.randint(0, 30 * 86_400_000), f"req_{i:024d}", rng.choice(keys),
               "/v1/chat/completions", rng.choice(models), "prov", "up", status, p, c, 0, 0,
               (p * 2.5 + c * 10) / 1e6, rng.randint(50, 3000), rng.randint(20, 800), 1,
               rng.random() < 0.6, None if status == 200 else "upstream_error")
con.executemany("INSERT INTO usage (row_id, ts_ms, request_id, key_id, endpoint, model, provider, "
                "upstream_model, status, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, "
                "cost_usd, latency_ms, ttft_ms, attempts, stream, error_type) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", gen())
# The hourly rollup is rebuilt from these rows at the next start (migration 6 again,
# as on a database from before the rollup): its time is reported below.
con.execute("DROP TABLE usage_hourly")
con.execute("DELETE FROM schema_migrations WHERE version = 6")
con.commit()
PY

STARTED=$(date +%s.%N)
JUSINFER_LOG=warn target/release/jusinfer serve --config "$TMP/jusinfer.toml" >/dev/null 2>&1 &
BASE="http://127.0.0.1:$GW_PORT"
for _ in $(seq 1200); do curl -sf "$BASE/healthz" >/dev/null && break; sleep 0.1; done
MIGRATED=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$STARTED" "$(date +%s.%N)")
JAR="$TMP/jar"
CSRF=$(curl -s -c "$JAR" "$BASE/developer" | grep -o 'name="csrf" value="[^"]*"' | head -1 | sed 's/.*value="//;s/"$//')
curl -s -b "$JAR" -c "$JAR" -o /dev/null -X POST "$BASE/developer/login" \
  -H "Origin: $BASE" --data-urlencode "key=$KEY" --data-urlencode "csrf=$CSRF"

echo "ledger: $ROWS rows over 30 days, 50 keys, 12 models (SQLite); $REPEAT fetches per page"
echo "start with the rollup rebuilt from the ledger (migration 6): ${MIGRATED} s"
echo "rollup cells: $(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT COUNT(*) FROM usage_hourly').fetchone()[0])" "$TMP/bench.db")"
echo
echo "| page | median ms | worst ms | bytes |"
echo "|---|---:|---:|---:|"
page() {
  local name=$1 path=$2
  local times=() bytes=0
  for _ in $(seq "$REPEAT"); do
    read -r t b < <(curl -s -b "$JAR" -o /dev/null -w '%{time_total} %{size_download}\n' "$BASE$path")
    times+=("$t"); bytes=$b
  done
  printf '%s\n' "${times[@]}" | sort -n | awk -v n="$name" -v b="$bytes" \
    '{a[NR]=$1} END {printf "| %s | %.0f | %.0f | %d |\n", n, a[int((NR+1)/2)]*1000, a[NR]*1000, b}'
}
page "keys (50 keys)" "/developer/keys"
page "usage, 24 h by hour, all keys" "/developer/usage?range=24h&bucket=hour"
page "usage, 30 d by day, all keys" "/developer/usage?range=30d&bucket=day"
page "usage, 7 d by hour, one key" "/developer/usage?range=7d&bucket=hour&key=key_bench007"
page "usage, 30 d, one model" "/developer/usage?range=30d&model=gpt-4o"
page "CSV, 24 h (all rows)" "/developer/usage.csv?range=24h"
page "CSV, 30 d (capped at 100,000 rows)" "/developer/usage.csv?range=30d"
page "models" "/developer/models"
echo
for a in portal.css portal.js; do
  printf '%s: %s bytes\n' "$a" "$(curl -s "$BASE/developer/static/$a" | wc -c)"
done
