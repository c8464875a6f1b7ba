#!/usr/bin/env bash
# Debian packages the tests and the demo use: Mosquitto (the reference broker, with its
# clients), sqlite3 (to check the database file with the real CLI), and qemu-user-static
# with the arm64/armhf runtime libraries (to run the ARM binaries in the test suite).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  mosquitto mosquitto-clients sqlite3 openssl systemd ca-certificates \
  qemu-user-static libc6-arm64-cross >/dev/null
echo "system packages installed"
