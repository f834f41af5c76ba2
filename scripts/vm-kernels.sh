#!/bin/sh
# vm-kernels.sh [KERNEL...]: fetch Debian kernels for the VM test matrix.
#
# KERNEL is 5.10 (bullseye-security), 6.1 (bookworm) or 6.12 (bookworm-backports); default: all
# three. "host" and "host-fallbacks" are accepted and ignored, so the same list can be passed as
# to vmtest.sh.
#
# Each kernel is downloaded with apt-get download through a private sources list and private
# state and cache directories, so the machine's own apt configuration is never read or changed,
# and unpacked into $FSVIRT_VM_CACHE/KERNEL (default ~/.cache/fsvirt-vmtest/KERNEL):
#   vmlinuz     the kernel image
#   overlay.ko  the overlayfs module, uncompressed (absent if the kernel has it built in)
#   release     the kernel release (uname -r)
#   version     the Debian package name and version
# A kernel already unpacked there is reused without touching the network. qemu-system-x86,
# busybox-static and xz-utils are installed (apt-get install --no-install-recommends) when missing.
#
# FSVIRT_VM_FLAVOUR picks the Debian flavour: cloud-amd64 (default, smaller) or amd64.
set -eu

cache=${FSVIRT_VM_CACHE:-$HOME/.cache/fsvirt-vmtest}
flavour=${FSVIRT_VM_FLAVOUR:-cloud-amd64}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

die() {
	echo "vm-kernels: $*" >&2
	exit 1
}

# suite KERNEL prints the apt sources line that holds KERNEL.
suite() {
	case $1 in
	5.10) echo "deb [signed-by=$keyring] http://deb.debian.org/debian-security bullseye-security main" ;;
	6.1) echo "deb [signed-by=$keyring] http://deb.debian.org/debian bookworm main" ;;
	6.12) echo "deb [signed-by=$keyring] http://deb.debian.org/debian bookworm-backports main" ;;
	*) die "unknown kernel $1 (want 5.10, 6.1 or 6.12)" ;;
	esac
}

# fetch KERNEL downloads and unpacks KERNEL into $cache/KERNEL unless it is already there.
fetch() {
	k=$1
	dest=$cache/$k
	if [ -s "$dest/vmlinuz" ] && [ -s "$dest/release" ]; then
		echo "$k: cached $(cat "$dest/release") in $dest"
		return
	fi
	[ -r "$keyring" ] || die "$keyring missing: apt-get install debian-archive-keyring"

	apt=$cache/apt/$k
	mkdir -p "$apt/etc/sources.list.d" "$apt/etc/preferences.d" \
		"$apt/state/lists/partial" "$apt/cache/archives/partial" "$apt/debs"
	suite "$k" >"$apt/etc/sources.list"
	set -- -q -o Dir::Etc::SourceList="$apt/etc/sources.list" \
		-o Dir::Etc::SourceParts="$apt/etc/sources.list.d" \
		-o Dir::Etc::Preferences="$apt/etc/preferences" \
		-o Dir::Etc::PreferencesParts="$apt/etc/preferences.d" \
		-o Dir::State="$apt/state" -o Dir::Cache="$apt/cache"
	# apt drops to the _apt user for downloads, which cannot reach a cache under /root; the
	# files are still checked against the archive keyring.
	[ "$(id -u)" -ne 0 ] || set -- "$@" -o APT::Sandbox::User=root

	echo "$k: apt-get update ($(cut -d' ' -f3- "$apt/etc/sources.list"))"
	apt-get "$@" update >"$apt/update.log" 2>&1 || {
		cat "$apt/update.log" >&2
		die "$k: apt-get update failed"
	}
	pkg=$(apt-cache "$@" depends --important "linux-image-$flavour" 2>/dev/null |
		sed -n "s/^ *Depends: \(linux-image-$k\.[0-9a-z.+-]*-$flavour\)\$/\1/p" | head -n 1)
	if [ -z "$pkg" ]; then
		# The suite may carry newer images without their metapackage: take the newest.
		pkg=$(apt-cache "$@" pkgnames "linux-image-$k." |
			grep -E "^linux-image-$k\.[0-9a-z.+-]+-$flavour\$" | sort -V | tail -n 1)
	fi
	[ -n "$pkg" ] || die "$k: no linux-image-$k.*-$flavour package in $(cat "$apt/etc/sources.list")"

	echo "$k: apt-get download $pkg"
	rm -f "$apt/debs"/*.deb
	(cd "$apt/debs" && apt-get "$@" download "$pkg") || die "$k: apt-get download $pkg failed"
	deb=$(ls "$apt/debs"/*.deb)

	tmp=$dest.tmp
	rm -rf "$tmp"
	mkdir -p "$tmp/x"
	dpkg-deb -x "$deb" "$tmp/x" || die "$k: cannot unpack $deb"
	image=$(find "$tmp/x/boot" -name 'vmlinuz-*' 2>/dev/null | head -n 1)
	[ -n "$image" ] || die "$k: $deb holds no /boot/vmlinuz-*"
	release=${image##*/vmlinuz-}
	mv "$image" "$tmp/vmlinuz"
	echo "$release" >"$tmp/release"
	echo "$pkg $(dpkg-deb -f "$deb" Version)" >"$tmp/version"
	mod=$(find "$tmp/x/lib/modules/$release" "$tmp/x/usr/lib/modules/$release" \
		-name 'overlay.ko*' 2>/dev/null | head -n 1)
	case $mod in
	"") echo "$k: no overlay module (built in or absent)" ;;
	*.ko) mv "$mod" "$tmp/overlay.ko" ;;
	*.ko.xz) xz -dc "$mod" >"$tmp/overlay.ko" ;;
	*.ko.zst) zstd -qdc "$mod" >"$tmp/overlay.ko" ;;
	*) die "$k: cannot decompress $mod" ;;
	esac
	rm -rf "$tmp/x" "$deb"
	rm -rf "$dest"
	mv "$tmp" "$dest"
	echo "$k: $release in $dest"
}

# need_tools installs QEMU and a static busybox, which the VMs run on, and xz (Debian's newer
# kernels compress their modules), when they are missing.
need_tools() {
	missing=
	command -v qemu-system-x86_64 >/dev/null || missing="$missing qemu-system-x86"
	command -v xz >/dev/null || missing="$missing xz-utils"
	[ "$(dpkg-query -W -f '${Status}' busybox-static 2>/dev/null)" = "install ok installed" ] ||
		missing="$missing busybox-static"
	[ -n "$missing" ] || return 0
	[ "$(id -u)" -eq 0 ] || die "missing$missing: apt-get install --no-install-recommends$missing"
	echo "vm-kernels: apt-get install --no-install-recommends$missing"
	export DEBIAN_FRONTEND=noninteractive
	# shellcheck disable=SC2086 # word splitting wanted
	apt-get install -y -q --no-install-recommends $missing >/dev/null 2>&1 || {
		apt-get update -q >/dev/null 2>&1 || true
		apt-get install -y -q --no-install-recommends $missing >/dev/null
	} || die "apt-get install$missing failed"
}

[ $# -gt 0 ] || set -- 5.10 6.1 6.12
command -v apt-get >/dev/null || die "apt-get not found: kernels come from Debian's archive"
need_tools
for k in "$@"; do
	case $k in host | host-fallbacks) ;; *) fetch "$k" ;; esac
done
