#!/usr/bin/env bash
# Installs everything Pahlevan needs on a Debian bookworm machine with Node 20 (as root), then builds it.
# Idempotent: safe to run again. `./setup.sh && npx pahlevan demo` is the README's first command.
set -euo pipefail
cd "$(dirname "$0")"

if [ "$(id -u)" != 0 ]; then
  echo "setup.sh: run as root (it installs Debian packages and later loads BPF programs)" >&2
  exit 1
fi

# clang/llvm/bpftool/libbpf: BPF build; gcc/make/libelf/zlib: the native helper; crun/runc/busybox: containers;
# qemu + cloud kernel: BPF-LSM proof; prometheus: promtool; iperf3/iproute2: network benchmarks and tests.
DEBIAN_PACKAGES=(clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev make gcc pkg-config crun runc busybox-static
  iproute2 libseccomp-dev qemu-system-x86 prometheus iperf3 strace python3 cpio gzip kmod)
missing=()
for p in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# node-gyp style builds need Node's headers from the distribution; npm ci installs exactly the lockfile.
export npm_config_nodedir="${npm_config_nodedir:-/usr}"
npm ci --no-audit --no-fund
if [ -x scripts/fetch-lsm-kernel.sh ]; then scripts/fetch-lsm-kernel.sh; fi
npm run build
echo "setup.sh: ready"
