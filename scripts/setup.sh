#!/usr/bin/env bash
# Installs what Portcullis needs on a Debian machine with Rust (rustup), and nothing that
# is already there. `scripts/setup.sh run` for building and serving; `scripts/setup.sh test`
# adds what the test suites need (Chromium, Node packages, cargo-deb); `dist` what
# `make dist` needs.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-run}
# No cargo-leptos: compiling it took 20 minutes of a first run on 2 cores, and
# scripts/build-site.sh runs the same steps with the tools below.
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
# The agent offered for download is static (musl): ring's C code needs musl-gcc.
command -v musl-gcc >/dev/null || packages+=(musl-tools)
# The browser bundle is served precompressed (scripts/build-site.sh makes .br and .gz).
command -v brotli >/dev/null || packages+=(brotli)
if [ "$mode" = test ]; then
  [ -x /usr/bin/chromium ] || packages+=(chromium)
  command -v nft >/dev/null || packages+=(nftables)
  command -v ip >/dev/null || packages+=(iproute2)
  command -v curl >/dev/null || packages+=(curl)
  command -v jq >/dev/null || packages+=(jq)
  # The API fuzz run (scripts/fuzz-api.sh) makes a venv; Debian splits ensurepip out.
  python3 -c 'import ensurepip' 2>/dev/null || packages+=(python3-venv)
  # `promtool check metrics` on the /metrics page; the TLS example's proxy; the units'
  # `systemd-analyze verify`; the packages' inspection and install (dpkg-deb comes with dpkg).
  command -v promtool >/dev/null || packages+=(prometheus)
  command -v caddy >/dev/null || packages+=(caddy)
  command -v systemd-analyze >/dev/null || packages+=(systemd)
  # A real SMTP server for the e-mail notification tests (run with Debian's python3).
  /usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || packages+=(python3-aiosmtpd)
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

if ! rustup target list --installed | grep -qx x86_64-unknown-linux-musl; then
  say "adding the x86_64-unknown-linux-musl target (the static agent)"
  rustup target add x86_64-unknown-linux-musl
fi

if ! wasm-bindgen --version 2>/dev/null | grep -q " $WASM_BINDGEN_VERSION\$"; then
  say "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (once)"
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --locked
fi

if [ ! -x tools/node_modules/.bin/wasm-opt ] || [ tools/package-lock.json -nt tools/node_modules ]; then
  say "installing the build tools from npm (Binaryen's wasm-opt, once)"
  (cd tools && npm ci --no-audit --no-fund --loglevel=error)
fi

# Debian packages of the server and the agent (`make dist`, also checked by `make test`).
CARGO_DEB_VERSION=3.8.0
if [ "$mode" = test ] || [ "$mode" = dist ]; then
  if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
    say "installing cargo-deb $CARGO_DEB_VERSION (once)"
    cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked
  fi
fi

if [ "$mode" = test ]; then
  if [ ! -d end2end/node_modules ] || [ end2end/package-lock.json -nt end2end/node_modules ]; then
    say "installing the browser-test packages (npm ci)"
    (cd end2end && npm ci --no-audit --no-fund --loglevel=error)
  fi
  # A portal left running (a bench stopped half way, a forgotten `make run`) takes CPU and
  # database connections from the suites, whose time-outs and busy answers then fail at
  # random. Named here, not stopped: it may be someone's.
  if stray=$(pgrep -a -f '(^|/)(portcullis-server|portcullis-agent|heaptrack)( |$)'); then
    say "WARNING: these processes compete with the tests:"
    sed 's/^/  /' <<<"$stray"
  fi
fi
say "ready ($mode)"
