# shellcheck shell=bash
#
# The cargo tools scripts/test needs, installed once when missing (never
# per run): cargo-nextest (the test runner: one process per test, so a
# test's process-wide state is its own) and cargo-audit (checks Cargo.lock
# against the RustSec advisory database). Source this file; it defines
# functions only.
#
#   ensure_cargo_tool BINARY CRATE   installs CRATE with cargo install --locked
#                                    unless BINARY runs

ensure_cargo_tool() {
  local binary=$1 crate=$2
  if "$binary" --version >/dev/null 2>&1 || cargo "${binary#cargo-}" --version >/dev/null 2>&1; then
    return 0
  fi
  payd_log "$binary not found; installing $crate (once; takes a few minutes)"
  cargo install --locked "$crate" || {
    payd_err "could not install $crate; install it yourself: cargo install --locked $crate"
    return 1
  }
}
