#!/usr/bin/env bash
# Fetches a kernel with BPF-LSM for the qemu proof of bpf/lsm.bpf.c (test/lsm-qemu/): Debian's cloud
# kernel has CONFIG_BPF_LSM=y, BTF and `bpf` among its default LSMs. Downloaded with apt, unpacked with
# dpkg -x into a cache directory; nothing is installed on the host. Idempotent.
# Output: $PAHLEVAN_LSM_KERNEL_DIR (default .cache/lsm-kernel)/vmlinuz
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${PAHLEVAN_LSM_KERNEL_DIR:-.cache/lsm-kernel}"
if [ -s "$dir/vmlinuz" ]; then
  echo "fetch-lsm-kernel: $dir/vmlinuz already present ($(cat "$dir/version" 2>/dev/null || echo unknown))"
  exit 0
fi
for tool in apt-get apt-cache dpkg; do
  command -v "$tool" >/dev/null || { echo "fetch-lsm-kernel: $tool not found (needs a Debian system)" >&2; exit 1; }
done
meta="${PAHLEVAN_LSM_KERNEL_PACKAGE:-linux-image-cloud-amd64}"
pkg="$(apt-cache depends "$meta" 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n1)"
if [ -z "$pkg" ]; then
  apt-get update -qq || true
  pkg="$(apt-cache depends "$meta" 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n1)"
fi
[ -n "$pkg" ] || { echo "fetch-lsm-kernel: cannot resolve $meta to a kernel package (apt-cache depends $meta)" >&2; exit 1; }
mkdir -p "$dir"
tmp="$(mktemp -d "$dir/tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
# apt-get download writes into the current directory (as the _apt user when it can: make it writable).
chmod 777 "$tmp"
(cd "$tmp" && apt-get download -qq "$pkg")
deb="$(ls "$tmp"/*.deb | head -n1)"
dpkg -x "$deb" "$tmp/x"
vmlinuz="$(ls "$tmp"/x/boot/vmlinuz-* | head -n1)"
[ -s "$vmlinuz" ] || { echo "fetch-lsm-kernel: no /boot/vmlinuz-* in $deb" >&2; exit 1; }
cp "$vmlinuz" "$dir/vmlinuz.tmp" && mv "$dir/vmlinuz.tmp" "$dir/vmlinuz"
cp "$tmp"/x/boot/config-* "$dir/config" 2>/dev/null || true
echo "$pkg" > "$dir/version"
echo "fetch-lsm-kernel: $pkg -> $dir/vmlinuz"
