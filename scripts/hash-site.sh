#!/usr/bin/env bash
# Gives the browser bundle in SITE_ROOT/pkg content-hashed names and precompressed copies,
# as a release site has them:
#
#   scripts/hash-site.sh [SITE_ROOT]     default target/site; scripts/build-site.sh runs it
#
# NAME.js, NAME.wasm and NAME.css become NAME.<hash>.EXT, as cargo-leptos' hash-files does:
# the hash is the base64url (unpadded) MD5 of the file, and SITE_ROOT/hash.txt lists them
# ("js: <hash>", one a line) for Leptos' HydrationScripts and HashedStylesheet. The server
# turns hashing on when hash.txt is there and serves these names as immutable
# (server/src/assets.rs). The glue names no other pkg file (the page hands it the wasm's
# path), so nothing inside needs rewriting.
#
# A site without hash.txt (the debug browser-test loop copies plain files) keeps the plain
# names; run this on it to test what a release serves (end2end/tests/assets.spec.js), and
# again after copying a new bundle in (or remove hash.txt): hash.txt names the files the
# pages load, whatever plain ones lie beside them.
set -euo pipefail
SITE_ROOT=${1:-target/site}
OUTPUT_NAME=${LEPTOS_OUTPUT_NAME:-portcullis}
PKG_DIR=$SITE_ROOT/pkg
for ext in js wasm css; do
  [ -f "$PKG_DIR/$OUTPUT_NAME.$ext" ] || { echo "hash-site: $PKG_DIR/$OUTPUT_NAME.$ext is missing" >&2; exit 1; }
done
# The names of an earlier run would pile up.
rm -f "$PKG_DIR/$OUTPUT_NAME".*.* "$SITE_ROOT/hash.txt"
: > "$SITE_ROOT/hash.txt.tmp"
for ext in js wasm css; do
  f=$PKG_DIR/$OUTPUT_NAME.$ext
  hash=$(python3 -c 'import base64, hashlib, sys
print(base64.urlsafe_b64encode(hashlib.md5(open(sys.argv[1], "rb").read()).digest()).rstrip(b"=").decode())' "$f")
  hashed=$PKG_DIR/$OUTPUT_NAME.$hash.$ext
  mv "$f" "$hashed"
  # The pages the server writes itself (the sign-in refusal of server/src/oidc.rs) link
  # the plain stylesheet, revalidated each time: it stays beside its hashed name.
  if [ "$ext" = css ]; then cp "$hashed" "$f"; fi
  echo "$ext: $hash" >> "$SITE_ROOT/hash.txt.tmp"
  # Served precompressed (server/src/assets.rs): compressed once here at the highest
  # levels, never per request.
  gzip -9 -k -f -n "$hashed"
  brotli -q 11 -k -f "$hashed"
done
# Last, so that a failed run leaves no hash.txt naming files that are not there.
mv "$SITE_ROOT/hash.txt.tmp" "$SITE_ROOT/hash.txt"
