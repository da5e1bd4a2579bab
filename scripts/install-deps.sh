#!/bin/sh
# Installs the Debian 12 packages strata needs, and only those that are missing.
# Quiet when nothing is missing. Usage: scripts/install-deps.sh build|test|bench
#   build: what `make` and `make run` need
#   test:  build, plus what `make test` needs (clients, pytest, clang-format)
#   bench: build, plus the peers and tools `make bench` runs
# The packages and the reason for each are listed in docs/dependencies.md.
set -eu

build_packages="gcc make libc6-dev libxxhash-dev liburing-dev libisal-dev libssl-dev libsodium-dev
                liblua5.1-0-dev lua-cjson-dev lua-bitop-dev pkg-config"
test_packages="$build_packages redis-tools python3 python3-redis python3-pytest clang-format procps
               curl prometheus chromium fonts-dejavu-core python3-numpy python3-torch memcached
               util-linux iproute2 clang libclang-rt-14-dev awscli python3-boto3 rclone s3cmd
               s3fs openssl pkg-config groff-base python3-venv python3-pip python3-setuptools
               systemd"
bench_packages="$build_packages redis-tools redis-server bc curl wrk libmicrohttpd-dev fio memcached python3 python3-redis python3-numpy python3-hiredis
                iperf3 python3-matplotlib util-linux util-linux-extra openssl"

case "${1:-build}" in
build) wanted=$build_packages ;;
test) wanted=$test_packages ;;
bench) wanted=$bench_packages ;;
*)
    echo "usage: $0 build|test|bench" >&2
    exit 2
    ;;
esac

missing=""
for package in $wanted; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $package"
    fi
done
[ -z "$missing" ] && exit 0

echo "installing:$missing"
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo_command="sudo"
    else
        echo "missing packages:$missing; run as root or install them with apt-get" >&2
        exit 1
    fi
else
    sudo_command=""
fi
export DEBIAN_FRONTEND=noninteractive
$sudo_command apt-get update -qq
# shellcheck disable=SC2086
$sudo_command apt-get install -y -qq --no-install-recommends $missing >/dev/null
