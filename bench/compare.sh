#!/usr/bin/env bash
# Two builds of the gateway side by side on the same mock upstream: non-streaming requests
# at 32 connections with a keyed (unlimited) client, and 20-chunk streams, interleaved over
# several rounds (medians reported). For checking that a change costs nothing on the
# request path:
#
#   bench/compare.sh OLD_BINARY [NEW_BINARY]     # NEW defaults to target/release/jusinfer
#   DUR=10 ROUNDS=4 bench/compare.sh /tmp/old/jusinfer
#   NEW_EXTRA='ledger_sync = true' bench/compare.sh target/release/jusinfer   # one setting
#
# OLD_EXTRA / NEW_EXTRA: top-level config lines added to that side's config.
# OLD_MODEL / NEW_MODEL: the model each side's non-streaming requests name (default
# mock/fast; gem/fast is the same answer from a Gemini-shaped upstream, translated).
# OLD_API / NEW_API: `chat` (default) or `gemini`, the inbound API each side's
# non-streaming requests speak (`gemini`: `/v1beta/models/{MODEL}:generateContent`).
# STREAMS=0 skips the stream measurement (the Gemini `fast` scenario has no stream).
#   OLD_MODEL=mock/fast NEW_MODEL=gem/fast STREAMS=0 bench/compare.sh target/release/jusinfer
# aws/us.amazon.fast: the same answer from a Bedrock-shaped upstream (Converse), every
# request SigV4-signed with test keys; awskey/us.amazon.fast: the same with a Bedrock API key.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OLD=${1:?usage: bench/compare.sh OLD_BINARY [NEW_BINARY]}
NEW=${2:-$ROOT/target/release/jusinfer}
DUR=${DUR:-10}
ROUNDS=${ROUNDS:-4}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --workspace --bins --locked >/dev/null 2>&1

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
TMP=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$TMP"' EXIT
MOCK_PORT=$(free_port)
target/release/jusinfer-sim --quiet --listen 127.0.0.1:$MOCK_PORT 2>/dev/null &

# A Gemini-shaped provider on the same mock, only when a side names it (older builds
# don't know the kind).
GEM=""
case "${OLD_MODEL:-}${NEW_MODEL:-}" in
  *gem/*) GEM=$(printf '\n[providers.gem]\nkind = "gemini"\nbase_url = "http://127.0.0.1:%s/v1beta"\napi_key = "mock-key"\n' "$MOCK_PORT") ;;
esac
case "${OLD_MODEL:-}${NEW_MODEL:-}" in
  *aws*/*)
    # aws: SigV4 with test keys; awskey: the same upstream with a Bedrock API key (bearer).
    GEM=$(printf '%s\n[providers.aws]\nkind = "bedrock"\nbase_url = "http://127.0.0.1:%s"\nregion = "us-east-1"\naccess_key_id = "AKIDBENCHBENCHBENCH0"\nsecret_access_key = "benchsecret"\n' "$GEM" "$MOCK_PORT")
    GEM+=$(printf '\n[providers.awskey]\nkind = "bedrock"\nbase_url = "http://127.0.0.1:%s"\nregion = "us-east-1"\napi_key = "bench-key"\n' "$MOCK_PORT") ;;
esac
declare -A URL KEY
for name in old new; do
  bin=$OLD; extra=${OLD_EXTRA:-}
  [ $name = new ] && bin=$NEW && extra=${NEW_EXTRA:-}
  port=$(free_port)
  cat > "$TMP/$name.toml" <<TOML
listen = "127.0.0.1:$port"
database = "sqlite://$TMP/$name.db"
$extra
[providers.mock]
kind = "openai-compatible"
base_url = "http://127.0.0.1:$MOCK_PORT/v1"
api_key = "sk-mock"
models = ["fast"]
$GEM
TOML
  KEY[$name]=$("$bin" keys create --name bench --config "$TMP/$name.toml" 2>/dev/null | tail -1)
  JUSINFER_LOG=warn "$bin" serve --config "$TMP/$name.toml" >/dev/null 2>&1 &
  URL[$name]=http://127.0.0.1:$port
  for _ in $(seq 100); do curl -sf "${URL[$name]}/healthz" >/dev/null && break; sleep 0.1; done
done
cat > "$TMP/req.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
if os.getenv("API") == "gemini" then
  wrk.body = '{"contents":[{"role":"user","parts":[{"text":"Say hello."}]}]}'
  wrk.headers["x-goog-api-key"] = os.getenv("KEY")
else
  wrk.body = '{"model":"' .. os.getenv("MODEL") .. '","messages":[{"role":"user","content":"Say hello."}]}'
  wrk.headers["authorization"] = "Bearer " .. os.getenv("KEY")
end
LUA
declare -A MODEL=([old]=${OLD_MODEL:-mock/fast} [new]=${NEW_MODEL:-mock/fast})
declare -A API=([old]=${OLD_API:-chat} [new]=${NEW_API:-chat})
declare -A PATHS
for name in old new; do
  PATHS[$name]=/v1/chat/completions
  [ "${API[$name]}" = gemini ] && PATHS[$name]="/v1beta/models/${MODEL[$name]}:generateContent"
done
for name in old new; do # warm-up
  API=${API[$name]} MODEL=${MODEL[$name]} KEY=${KEY[$name]} wrk -t2 -c32 -d2s -s "$TMP/req.lua" "${URL[$name]}${PATHS[$name]}" >/dev/null
done
: > "$TMP/results"
for round in $(seq "$ROUNDS"); do
  for name in old new; do
    read -r rps p50 p99 err < <(API=${API[$name]} MODEL=${MODEL[$name]} KEY=${KEY[$name]} wrk -t2 -c32 -d"${DUR}"s --latency \
      -s "$TMP/req.lua" "${URL[$name]}${PATHS[$name]}" | python3 bench/wrk_summary.py)
    s="0 0"
    [ "${STREAMS:-1}" = 0 ] || s=$(target/release/jusinfer-load stream --url "${URL[$name]}/v1/chat/completions" --key "${KEY[$name]}" \
      --model "mock/fast;chunks=20;gap_ms=5" --connections 32 --duration "$DUR" \
      | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["ttft_ms"]["p50"], d["ttft_ms"]["p99"])')
    echo "$round $name $rps $p50 $p99 $err $s" | tee -a "$TMP/results" >&2
  done
done
python3 - "$TMP/results" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
print("| build | req/s (median) | p50 ms | p99 ms | non-2xx | stream first chunk p50 / p99 ms |")
print("|---|---:|---:|---:|---:|---:|")
for name in ("old", "new"):
    r = [x for x in rows if x[1] == name]
    med = lambda i: statistics.median(float(x[i]) for x in r)
    print(f"| {name} | {med(2):,.0f} | {med(3):.2f} | {med(4):.2f} | {sum(int(float(x[5])) for x in r)} | {med(6):.2f} / {med(7):.2f} |")
PY
