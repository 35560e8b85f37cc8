#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need, builds, runs
# the Rust tests and the end-to-end tests (real binary, official SDKs, curl, simulator).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR=never
export JUSINFER_FIXTURES="${JUSINFER_FIXTURES:-$(cd .. && pwd)/shared/fixtures}"
if [ ! -d "$JUSINFER_FIXTURES" ]; then
  echo "error: fixtures not found at $JUSINFER_FIXTURES (set JUSINFER_FIXTURES)" >&2
  exit 2
fi

need() { command -v "$1" >/dev/null 2>&1; }
if ! need curl; then
  echo "== installing curl"
  (apt-get update -qq && apt-get install -y -qq curl) >/dev/null
fi
# PostgreSQL and Redis servers for the storage and multi-instance tests; the tests start
# their own throwaway instances on free loopback ports.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! need redis-server; then
  echo "== installing PostgreSQL and Redis"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql redis-server) >/dev/null
fi
# Debian's Chromium for the developer portal's browser tests (driven by Playwright from the
# Python environment below; nothing is downloaded by Playwright itself).
if ! need chromium; then
  echo "== installing Chromium"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null
fi
# Node.js for the real-client lane (tests/clients: the official SDKs and the Vercel AI SDK).
if ! need node || ! need npm; then
  echo "== installing Node.js"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm) >/dev/null
fi
if ! need cargo; then
  echo "error: cargo not found: install Rust (https://rustup.rs) first" >&2
  exit 2
fi

# The Python environment (official SDKs, pinned) and the real clients (pinned npm
# packages) install in the background, beside the Rust build: mostly downloads and
# unpacking, which the two cores' compilers barely notice.
setup_log="$(mktemp)"
(
  set -e
  echo "== Python environment (official SDKs, pinned)"
  if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import openai, pytest' 2>/dev/null; then
    python3 -m venv .venv
  fi
  .venv/bin/python -m pip install -q --disable-pip-version-check -r tests/requirements.txt
  echo "== real clients (pinned npm packages)"
  # Installed again only when the lock file changed.
  stamp=tests/clients/node_modules/.jusinfer-lock
  if [ ! -f "$stamp" ] || ! cmp -s tests/clients/package-lock.json "$stamp"; then
    (cd tests/clients && npm ci --no-audit --no-fund --loglevel=error)
    cp tests/clients/package-lock.json "$stamp"
  fi
) >"$setup_log" 2>&1 &
setup_pid=$!
trap 'kill "$setup_pid" 2>/dev/null || true; rm -f "$setup_log"' EXIT

echo "== formatting and lints"
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add rustfmt clippy
fi
cargo fmt --all --check
cargo clippy --release --workspace --all-targets --locked -- -D warnings

echo "== building (release)"
cargo build --release --workspace --bins --locked

echo "== Rust tests"
cargo test --release --workspace --locked
# The micro-benchmarks as a smoke test: each case once, its output checked, nothing timed
# (`cargo bench -p jusinfer-translate --bench hot` and `-p jusinfer-gateway --bench
# hot_path` time them).
cargo test --release -p jusinfer-translate --bench hot --locked
cargo test --release -p jusinfer-gateway --bench hot_path --locked

# Each fuzz target for a bounded time (JUSINFER_FUZZ_SECS, default 30; 0 skips).
if [ "${JUSINFER_FUZZ_SECS:-30}" != 0 ]; then
  echo "== fuzzing (cargo-fuzz, ${JUSINFER_FUZZ_SECS:-30}s per target)"
  fuzz/run.sh "${JUSINFER_FUZZ_SECS:-30}"
fi

echo "== waiting for the Python environment and the real clients"
if ! wait "$setup_pid"; then
  cat "$setup_log" >&2
  echo "error: installing the Python environment or the real clients failed" >&2
  exit 1
fi
cat "$setup_log"
rm -f "$setup_log"
trap - EXIT

echo "== end-to-end tests"
cd tests/e2e
exec ../../.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
