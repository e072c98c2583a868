#!/usr/bin/env bash
# Builds what `make run` serves and the packages ship: the browser bundle (wasm), the
# release server, and the static agent that the server offers for download.
#
#   scripts/build-site.sh           all three, into target/site and target/release
#
# It does what `cargo leptos build --release` did, in the same places, without
# cargo-leptos: that tool took about 20 of the 41 minutes of a first `make test` on a
# 2-core machine just to compile itself, while every step it runs here is one command of a
# tool we install anyway (cargo, wasm-bindgen-cli, Binaryen's wasm-opt from tools/).
# The settings mirror `[[workspace.metadata.leptos]]` in Cargo.toml.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1mbuild:\033[0m %s\n' "$*"; }

OUTPUT_NAME=portcullis
SITE_ROOT=${PORTCULLIS_SITE_ROOT:-target/site}
PKG_DIR=$SITE_ROOT/pkg
DOWNLOADS=$SITE_ROOT/downloads
# The same value for every cargo call (also set in .cargo/config.toml), so that the server
# built here and by plain `cargo build`/`cargo test` share artifacts.
export LEPTOS_OUTPUT_NAME=$OUTPUT_NAME
# Binaryen 132 from the npm registry: Debian's binaryen 108 breaks the bundle.
export PATH="$PWD/tools/node_modules/.bin:$PATH"

WASM_TARGET=wasm32-unknown-unknown
AGENT_TARGET=x86_64-unknown-linux-musl

say "browser bundle (wasm, profile wasm-release)"
cargo build -p portcullis-frontend --lib --target "$WASM_TARGET" --no-default-features \
  --profile wasm-release
# Afresh: the hashed names of earlier builds would pile up.
rm -rf "$PKG_DIR" "$SITE_ROOT/hash.txt"
mkdir -p "$PKG_DIR"
wasm-bindgen --target web --out-name "$OUTPUT_NAME" --out-dir "$PKG_DIR" --no-typescript \
  "target/$WASM_TARGET/wasm-release/portcullis_frontend.wasm"
# Leptos' hydration script loads pkg/NAME.wasm.
mv "$PKG_DIR/${OUTPUT_NAME}_bg.wasm" "$PKG_DIR/$OUTPUT_NAME.wasm"
# -O1 rather than -Oz: measured on this bundle, -O1 gives 2.15 MB raw but 617 KB gzipped,
# -Oz 1.93 MB raw but 712 KB gzipped, and takes a third of the time.
wasm-opt -O1 --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
  --enable-mutable-globals --enable-reference-types --enable-multivalue \
  "$PKG_DIR/$OUTPUT_NAME.wasm" -o "$PKG_DIR/$OUTPUT_NAME.wasm"
cp style/main.css "$PKG_DIR/$OUTPUT_NAME.css"
cp -R public/. "$SITE_ROOT/"
python3 scripts/check-bundle.py "$PKG_DIR/$OUTPUT_NAME.wasm"
# Content-hashed names (cached for a year by browsers) and brotli/gzip copies.
scripts/hash-site.sh "$SITE_ROOT"

say "release server"
cargo build -p portcullis-server --bin portcullis-server --release

# Static (musl) so that one file runs on any x86-64 Linux host, whatever its libc.
# ring's C parts are compiled with musl-gcc (Debian's musl-tools).
say "static agent ($AGENT_TARGET)"
CC_x86_64_unknown_linux_musl=musl-gcc \
  cargo build -p portcullis-agent --release --target "$AGENT_TARGET"
mkdir -p "$DOWNLOADS"
install -s -m 0755 "target/$AGENT_TARGET/release/portcullis-agent" \
  "$DOWNLOADS/portcullis-agent-linux-x86_64"
(cd "$DOWNLOADS" && sha256sum portcullis-agent-linux-x86_64 > portcullis-agent-linux-x86_64.sha256)
say "done: $SITE_ROOT, target/release/portcullis-server, $DOWNLOADS"
