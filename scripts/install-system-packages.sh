#!/usr/bin/env bash
# Debian packages the tests, the demo and the release use: Mosquitto (the reference broker, with
# its clients), sqlite3 (to check the database file with the real CLI), unzip (Info-ZIP, to check
# the archives the hub streams), xz-utils (release archives), and qemu-user-static with the arm64
# and armhf runtime libraries (Debian multiarch) to run the ARM binaries in the test suite;
# binutils-arm-linux-gnueabihf strips the armv7 Node; faketime (libfaketime, LD_PRELOAD) runs
# the agent under a wrong or jumping clock; python3 and python3-yaml run the distribution's
# flashlex.py (test/integration/python-sdk.test.ts: with PyYAML and without it); chromium runs
# the web console's browser test (test/integration/console.test.ts, through playwright-core); wrk
# loads the hub in `bun run bench` (row 3) and hyperfine times starts in bench/targets.ts;
# postgresql (15 on Debian 12) is the hub's served database: the store contract and
# hub-postgres tests start their own cluster from /usr/lib/postgresql/15/bin, never Debian's.
# rabbitmq-server (3.10, with its MQTT plugin and HTTP auth backend) runs the three-node broker
# cluster of test/integration/rabbitmq-cluster.test.ts; its default node must not run (see below).
# prometheus is there for its promtool: test/unit/metrics.test.ts checks and unit-tests the sample
# alert rules (docs/prometheus/); the server itself is never started.
# Idempotent; works as root (CI) or with sudo.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

PACKAGES=(
  mosquitto mosquitto-clients sqlite3 openssl systemd ca-certificates xz-utils unzip faketime
  python3 python3-yaml chromium wrk hyperfine postgresql rabbitmq-server prometheus
  qemu-user-static libc6-arm64-cross
  libc6:armhf libstdc++6:armhf libatomic1:armhf binutils-arm-linux-gnueabihf
)

# armhf packages (libc6:armhf ...) need the architecture before `apt-get update` lists them.
if ! dpkg --print-foreign-architectures | grep -qx armhf; then
  $SUDO dpkg --add-architecture armhf
fi

missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null | grep -qx installed || missing+=("$package")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "system packages already installed"
  exit 0
fi

# Debian's postgresql package makes and starts a cluster `main` on port 5432 unless told not to.
# The tests run clusters of their own (own directory, port and socket), so none is wanted: the
# drop-in below (postgresql-common reads createcluster.d) stops it from being made. A cluster
# made before this script ran is left alone; nothing in the tests uses 5432.
$SUDO mkdir -p /etc/postgresql-common/createcluster.d
echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.d/flashlex-no-main.conf >/dev/null

# A mirror caught mid-sync fails one index (often armhf security); install from what we have,
# and let apt-get install be the judge.
# A fresh machine may be running unattended upgrades: wait for the dpkg lock (bounded) instead of failing.
APT=(apt-get -o DPkg::Lock::Timeout=600)
$SUDO "${APT[@]}" update -qq || echo "install-system-packages: apt-get update reported errors; trying with the package lists there are" >&2
# rabbitmq-server's postinst starts its default node (rabbit@HOST: ports 5672, 25672 and epmd's
# 4369), through systemd or, on a machine without it, /etc/init.d. The tests start their own nodes
# and must find those ports free, and a start that fails (no systemd, odd hostname) would fail the
# install. So while installing, a policy-rc.d (honoured by invoke-rc.d and deb-systemd-invoke)
# forbids starting services, unless the machine already has one (Debian's Docker images do).
POLICY=/usr/sbin/policy-rc.d
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\n# install-system-packages.sh: no service starts while installing\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
  $SUDO chmod 755 "$POLICY"
  # Removed however the script ends (a failed install, an interrupted CI job): left behind, it
  # would keep every later package's service from starting on this machine.
  trap '$SUDO rm -f "$POLICY"' EXIT
fi
$SUDO "${APT[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Nor at the next boot: the default node stays disabled (and stopped, had anything started it).
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  $SUDO systemctl disable --now rabbitmq-server.service >/dev/null 2>&1 || true
elif [ -x /etc/init.d/rabbitmq-server ]; then
  $SUDO /etc/init.d/rabbitmq-server stop >/dev/null 2>&1 || true
  $SUDO update-rc.d rabbitmq-server disable >/dev/null 2>&1 || true
fi
echo "system packages installed: ${missing[*]}"
