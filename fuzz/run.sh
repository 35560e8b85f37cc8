#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 30 s each) and a bounded number of
# inputs (JUSINFER_FUZZ_RUNS, default 20000), from a fixed random seed (JUSINFER_FUZZ_SEED,
# default 1) and the recorded traffic in ../shared/fixtures as the corpus: a CI run repeats
# what a developer ran. Longer exploration: a larger RUNS and another SEED.
# Usage: fuzz/run.sh [SECONDS]
# Needs cargo-fuzz (installed when missing). Works on the stable toolchain with
# `--sanitizer none`; with a nightly toolchain present, AddressSanitizer is used.
# The fuzz build (the longest step of a CI run) keeps its target directory outside the
# clone, in JUSINFER_FUZZ_TARGET_DIR (default ~/.cache/jusinfer/fuzz-target), so a later
# clone on the same machine rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-30}"
fixtures="${JUSINFER_FIXTURES:-$(cd ../.. && pwd)/shared/fixtures}"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi
target_dir="${JUSINFER_FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/jusinfer/fuzz-target}"
mkdir -p "$target_dir"
args=(--sanitizer none)
toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  args=()
  toolchain=(+nightly)
fi
corpus="$(mktemp -d)"
trap 'rm -rf "$corpus"' EXIT
mkdir -p "$corpus"/{sse_decoder,chat_stream,anthropic_stream,request_decoders,messages_stream,responses_stream,gemini_stream,eventstream_decoder}
cp "$fixtures"/openai-chat/*.sse "$corpus/sse_decoder/"
cp "$fixtures"/{anthropic,gemini,responses}/*.sse "$corpus/sse_decoder/" 2>/dev/null || true
cp "$fixtures"/openai-chat/*.sse "$corpus/chat_stream/"
cp "$fixtures"/openai-chat/*.sse "$corpus/messages_stream/"
cp "$fixtures"/openai-chat/*.sse "$corpus/responses_stream/"
cp "$fixtures"/anthropic/*.sse "$corpus/anthropic_stream/" 2>/dev/null || true
cp "$fixtures"/gemini/*.sse "$fixtures"/gemini/*request*.json "$corpus/gemini_stream/" 2>/dev/null || true
cp "$fixtures"/openai-chat/*.sse "$corpus/gemini_stream/"
find "$fixtures" -name '*request*.json' -exec cp {} "$corpus/request_decoders/" \;
# Each recording behind a 0x01 (the split byte the target reads first).
for f in "$fixtures"/bedrock/*.eventstream; do
  { printf '\001'; cat "$f"; } > "$corpus/eventstream_decoder/$(basename "$f")"
done
echo "== building the fuzz targets (${toolchain[*]:-stable} ${args[*]})"
if ! cargo "${toolchain[@]}" fuzz build --release "${args[@]}" --target-dir "$target_dir" >"$corpus/build.log" 2>&1; then
  tail -60 "$corpus/build.log" >&2
  exit 1
fi
for t in sse_decoder chat_stream anthropic_stream messages_stream responses_stream request_decoders gemini_stream eventstream_decoder; do
  echo "== fuzz $t"
  log="$corpus/$t.log"
  if ! cargo "${toolchain[@]}" fuzz run --release "${args[@]}" --target-dir "$target_dir" "$t" "$corpus/$t" -- \
      -max_total_time="$secs" -runs="${JUSINFER_FUZZ_RUNS:-20000}" -seed="${JUSINFER_FUZZ_SEED:-1}" \
      -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    tail -60 "$log" >&2
    echo "fuzz target $t failed (the crashing input is under fuzz/artifacts/$t)" >&2
    exit 1
  fi
  grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || true
done
echo "fuzz: 8 targets, up to ${secs}s and ${JUSINFER_FUZZ_RUNS:-20000} inputs each (seed ${JUSINFER_FUZZ_SEED:-1}), without a failure"
