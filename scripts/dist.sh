#!/usr/bin/env bash
# Packs what scripts/build-site.sh built, without compiling anything again, into
# target/dist: a Debian package of the server and one of the agent (cargo-deb), a tarball
# per binary, and SHA256SUMS over all of them.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\033[1mdist:\033[0m %s\n' "$*"; }

version=$(awk -F'"' '/^version = /{print $2; exit}' Cargo.toml)
dist=target/dist
agent_target=x86_64-unknown-linux-musl
for f in target/release/portcullis-server "target/$agent_target/release/portcullis-agent" \
  target/site/hash.txt target/site/downloads/portcullis-agent-linux-x86_64; do
  [ -e "$f" ] || { echo "dist: $f is missing: run scripts/build-site.sh (make release) first" >&2; exit 1; }
done
command -v cargo-deb >/dev/null || { echo "dist: cargo-deb is missing: scripts/setup.sh dist" >&2; exit 1; }

rm -rf "$dist"; mkdir -p "$dist"
say "Debian packages"
cargo deb -p portcullis-server --no-build --output "$dist/"
cargo deb -p portcullis-agent --no-build --target "$agent_target" --output "$dist/"

say "tarballs"
stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
server_dir=$stage/portcullis-server-$version-linux-x86_64
mkdir -p "$server_dir/site" "$server_dir/systemd"
install -m 0755 target/release/portcullis-server "$server_dir/"
strip "$server_dir/portcullis-server"
cp -R target/site/. "$server_dir/site/"
cp deploy/portcullis.toml "$server_dir/portcullis.toml.example"
cp deploy/systemd/portcullis-server.service "$server_dir/systemd/"
cp README.md "$server_dir/"
agent_dir=$stage/portcullis-agent-$version-linux-x86_64
mkdir -p "$agent_dir/systemd"
install -m 0755 "target/$agent_target/release/portcullis-agent" "$agent_dir/"
strip "$agent_dir/portcullis-agent"
cp deploy/systemd/portcullis-agent.service "$agent_dir/systemd/"
for d in "$server_dir" "$agent_dir"; do
  tar -C "$stage" --owner=0 --group=0 --sort=name -czf "$dist/$(basename "$d").tar.gz" "$(basename "$d")"
done

(cd "$dist" && for f in *.deb *.tar.gz; do sha256sum "$f" > "$f.sha256"; done && cat ./*.sha256 > SHA256SUMS)
say "done:"
ls -l "$dist" | awk 'NR>1{printf "  %10d  %s\n", $5, $9}'
