#!/usr/bin/env bash
# Builds Herald's Debian package with dpkg-deb:
#
#   cargo build --release --locked --bin herald
#   deploy/debian/build-deb.sh [BINARY] [OUTDIR]
#
# BINARY defaults to $CARGO_TARGET_DIR/release/herald (target/release/herald),
# OUTDIR to the current directory; prints the path of herald_<version>_<arch>.deb.
#
# The package holds /usr/bin/herald, the unit /lib/systemd/system/herald.service
# (deploy/systemd/herald.service, ExecStart pointing at /usr/bin/herald),
# /etc/herald/herald.toml (deploy/herald.toml, a conffile) and maintainer
# scripts: postinst adds the system user `herald` and, when there is none, a
# random secret in /etc/herald/secret; it enables and starts nothing.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
bin=${1:-${CARGO_TARGET_DIR:-$repo/target}/release/herald}
out=$(cd "${2:-.}" && pwd)
[[ -x "$bin" ]] || { echo "no Herald binary at $bin" >&2; exit 1; }

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/Cargo.toml" | head -n 1)
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/root"

install -D -m 0755 "$bin" "$root/usr/bin/herald"
strip --strip-unneeded "$root/usr/bin/herald" 2>/dev/null || true
install -d -m 0755 "$root/lib/systemd/system"
sed 's|^ExecStart=/usr/local/bin/herald |ExecStart=/usr/bin/herald |' "$repo/deploy/systemd/herald.service" \
    >"$root/lib/systemd/system/herald.service"
chmod 0644 "$root/lib/systemd/system/herald.service"
install -D -m 0644 "$repo/deploy/herald.toml" "$root/etc/herald/herald.toml"
install -D -m 0644 /dev/stdin "$root/usr/share/doc/herald/copyright" <<'EOF'
Herald, an XMPP external component for presence-aware mass message delivery.
License: MIT
EOF

# Shared libraries as dpkg-shlibdeps resolves them (libc6, libgcc-s1).
depends="libc6"
if command -v dpkg-shlibdeps >/dev/null; then
    mkdir -p "$stage/shlibs/debian"
    printf 'Source: herald\n\nPackage: herald\nArchitecture: any\n' >"$stage/shlibs/debian/control"
    depends=$(cd "$stage/shlibs" && dpkg-shlibdeps -O "$root/usr/bin/herald" 2>/dev/null |
        sed -n 's/^shlibs:Depends=//p')
fi

install -d -m 0755 "$root/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@SIZE@|$size|" \
    -e "s|@DEPENDS@|$depends|" "$here/control.in" >"$root/DEBIAN/control"
echo /etc/herald/herald.toml >"$root/DEBIAN/conffiles"
for script in postinst prerm postrm; do
    install -m 0755 "$here/$script" "$root/DEBIAN/$script"
done

deb="$out/herald_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$root" "$deb" >/dev/null
echo "$deb"
