#!/usr/bin/env bash
# Installs what Portcullis needs on a Debian machine with Rust (rustup), and nothing that
# is already there. `scripts/setup.sh run` for building and serving; `scripts/setup.sh test`
# adds what the test suites need (Chromium, Node packages).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-run}
# cargo-leptos: the newest release needs a newer rustc than 1.95; 0.3.10 with its own lock
# file builds here. `no_downloads`: it must use wasm-bindgen/wasm-opt from PATH and never
# fetch binaries at build time.
CARGO_LEPTOS_VERSION=0.3.10
# The wasm-bindgen CLI must equal the wasm-bindgen library in Cargo.lock.
WASM_BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/,""); print; exit}' Cargo.lock)

say() { printf '\033[1msetup:\033[0m %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "setup: need root to run: $*" >&2; exit 1; fi
}

packages=()
command -v cc >/dev/null || packages+=(build-essential)
command -v pkg-config >/dev/null || packages+=(pkg-config)
# The release bundle's wasm-opt comes from the npm registry (tools/package.json): Debian's
# binaryen 108 breaks wasm-bindgen's externref table export (the bundle never hydrates).
command -v node >/dev/null || packages+=(nodejs)
command -v npm >/dev/null || packages+=(npm)
command -v python3 >/dev/null || packages+=(python3)
if [ "$mode" = test ]; then
  [ -x /usr/bin/chromium ] || packages+=(chromium)
  command -v nft >/dev/null || packages+=(nftables)
  command -v ip >/dev/null || packages+=(iproute2)
  command -v curl >/dev/null || packages+=(curl)
  command -v jq >/dev/null || packages+=(jq)
  # The API fuzz run (scripts/fuzz-api.sh) makes a venv; Debian splits ensurepip out.
  python3 -c 'import ensurepip' 2>/dev/null || packages+=(python3-venv)
fi
if [ ${#packages[@]} -gt 0 ]; then
  say "installing Debian packages: ${packages[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

if ! cargo leptos --version 2>/dev/null | grep -q "$CARGO_LEPTOS_VERSION"; then
  say "installing cargo-leptos $CARGO_LEPTOS_VERSION (a few minutes, once)"
  cargo install cargo-leptos --version "$CARGO_LEPTOS_VERSION" --locked --features no_downloads
fi

if ! wasm-bindgen --version 2>/dev/null | grep -q " $WASM_BINDGEN_VERSION\$"; then
  say "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (once)"
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --locked
fi

if [ ! -x tools/node_modules/.bin/wasm-opt ] || [ tools/package-lock.json -nt tools/node_modules ]; then
  say "installing the build tools from npm (Binaryen's wasm-opt, once)"
  (cd tools && npm ci --no-audit --no-fund --loglevel=error)
fi

if [ "$mode" = test ]; then
  if [ ! -d end2end/node_modules ] || [ end2end/package-lock.json -nt end2end/node_modules ]; then
    say "installing the browser-test packages (npm ci)"
    (cd end2end && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi
say "ready ($mode)"
