#!/usr/bin/env bash
# Install what ciel needs to build, test and run, on Debian 12. Idempotent:
# does nothing when every package is already there.
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev
      libmicrohttpd-dev libjansson-dev libsqlite3-dev libssl-dev libcurl4-openssl-dev
      libcmocka-dev libarchive-dev sqlite3 curl openssl iproute2 procps jq clang-format git
      runc crun busybox-static nftables e2fsprogs python3 python3-numpy python3-scipy)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node and npm run the LLM tests' reference clients (the official openai
# package, Llama-3's tokenizer); a machine may already have a newer node.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing packages: ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
	exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
