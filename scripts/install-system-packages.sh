#!/bin/sh
# Install the Debian packages that urbansense's tests and demo run for real:
#   mosquitto         MQTT broker (gateways -> stream)
#   victoria-metrics  accepts InfluxDB's /api/v2/write, so the sink is tested for real
#   influxdb          InfluxDB 1.x, answers the InfluxQL queries of the Grafana boards
#   python3-venv      to create the project's virtual environment
#   systemd           systemd-analyze verifies the edge agent's unit file
#   docker-compose    `docker-compose config` checks the deployed stack (no engine needed)
#   openssl           make-certs.sh issues the broker's TLS certificate for the broker test
#   + shellcheck      lints the deployment's shell scripts (gateway install, certificates)
# Idempotent: does nothing when every program is already there.
set -eu

missing=""
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing="$missing mosquitto"
command -v victoria-metrics >/dev/null 2>&1 || missing="$missing victoria-metrics"
command -v influxd >/dev/null 2>&1 || missing="$missing influxdb"
command -v systemd-analyze >/dev/null 2>&1 || missing="$missing systemd"
command -v docker-compose >/dev/null 2>&1 || missing="$missing docker-compose"
command -v shellcheck >/dev/null 2>&1 || missing="$missing shellcheck"
command -v openssl >/dev/null 2>&1 || missing="$missing openssl"
python3 -m venv --help >/dev/null 2>&1 && python3 -c "import ensurepip" >/dev/null 2>&1 || missing="$missing python3-venv"

if [ -z "$missing" ]; then
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "urbansense: missing Debian packages:$missing" >&2
    echo "urbansense: run as root, or: sudo apt-get install -y$missing" >&2
    exit 1
fi
echo "urbansense: installing Debian packages:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
