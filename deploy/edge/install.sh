#!/bin/sh
# urbansense: install the edge agent on a gateway (Debian or Raspberry Pi OS), as root.
#
# Usage: deploy/edge/install.sh [options]
#   --config FILE     the gateway's agent.toml, installed as /etc/urbansense/agent.toml
#                     (mode 0640, group urbansense: it holds the MQTT password). An
#                     existing one is kept unless --force-config is given.
#   --ca-file FILE    the broker's CA certificate, installed as /etc/urbansense/ca.crt
#   --package SPEC    what pip installs (default 'urbansense[edge]'); a wheel or a
#                     checkout works too: --package '/srv/urbansense[edge]'
#   --pip-args ARGS   more pip options, e.g. '--index-url https://mirror.example/simple'
#   --python PATH     the Python (3.11 or later) the venv is made from (default python3)
#   --root DIR        install into DIR instead of / (an image being built, or a test):
#                     no user is created, systemd is told through `systemctl --root`,
#                     nothing is started
#   --no-start        enable the service, but do not (re)start it
#   --dry-run         print what would be done, change nothing
#
# What it does, each step only when needed, so running it again upgrades the agent and
# leaves the configuration alone:
#   1. the system user `urbansense` (in group dialout, for serial sensors)
#   2. a virtual environment in /opt/urbansense with the agent (the `edge` extra)
#   3. /etc/urbansense with agent.toml (or the sample as agent.toml.example) and ca.crt
#   4. the systemd unit urbansense-agent.service next to this script, enabled; started
#      (or restarted, to run an upgrade) once agent.toml exists and passes
#      `urbansense-agent check`
set -eu

here=$(cd "$(dirname "$0")" && pwd)
unit_src="$here/urbansense-agent.service"
unit_name=urbansense-agent.service
user=urbansense
package='urbansense[edge]'
pip_args=""
python=python3
root=""
config=""
ca_file=""
force_config=0
start=1
dry_run=0

usage() {
    sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'
}

die() {
    echo "install.sh: $*" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case $1 in
        --config) [ $# -ge 2 ] || die "--config needs a file"; config=$2; shift ;;
        --ca-file) [ $# -ge 2 ] || die "--ca-file needs a file"; ca_file=$2; shift ;;
        --package) [ $# -ge 2 ] || die "--package needs a spec"; package=$2; shift ;;
        --pip-args) [ $# -ge 2 ] || die "--pip-args needs arguments"; pip_args=$2; shift ;;
        --python) [ $# -ge 2 ] || die "--python needs a path"; python=$2; shift ;;
        --root) [ $# -ge 2 ] || die "--root needs a directory"; root=$2; shift ;;
        --force-config) force_config=1 ;;
        --no-start) start=0 ;;
        --dry-run) dry_run=1 ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done

if [ -n "$root" ]; then
    case $root in /*) ;; *) root="$(pwd)/$root" ;; esac
    start=0
fi
prefix="$root/opt/urbansense"
etc="$root/etc/urbansense"
unit_dst="$root/etc/systemd/system/$unit_name"

[ -f "$unit_src" ] || die "the unit file $unit_src is missing (keep it next to this script)"
[ -z "$config" ] || [ -f "$config" ] || die "no such config file: $config"
[ -z "$ca_file" ] || [ -f "$ca_file" ] || die "no such CA file: $ca_file"
if [ "$dry_run" -eq 0 ] && [ -z "$root" ] && [ "$(id -u)" != "0" ]; then
    die "run as root (or try --dry-run)"
fi

# Run a command, or only show it with --dry-run.
run() {
    if [ "$dry_run" -eq 1 ]; then
        echo "+ $*"
    else
        "$@"
    fi
}

say() {
    echo "install.sh: $*"
}

# ------------------------------------------------------------------ 1. the user
if [ -n "$root" ]; then
    say "--root: not creating the user $user (create it on the target)"
elif getent passwd "$user" >/dev/null 2>&1; then
    say "user $user exists"
    run usermod --append --groups dialout "$user"
else
    run useradd --system --no-create-home --home-dir /var/lib/urbansense-agent \
        --shell /usr/sbin/nologin --groups dialout "$user"
fi

# ------------------------------------------------------------ 2. the virtualenv
if [ -x "$prefix/bin/python" ]; then
    say "virtual environment $prefix exists"
else
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "$python is older than 3.11; give a newer one with --python"
    run "$python" -m venv "$prefix"
fi
# shellcheck disable=SC2086  # pip_args is a list of options on purpose
run "$prefix/bin/python" -m pip install --quiet --disable-pip-version-check $pip_args \
    --upgrade "$package"

# -------------------------------------------------------- 3. the configuration
run install -d -m 0755 "$etc"
group_args=""
if [ -z "$root" ]; then
    group_args="-o root -g $user"
fi
if [ -n "$config" ]; then
    if [ -f "$etc/agent.toml" ] && [ "$force_config" -eq 0 ]; then
        say "$etc/agent.toml exists; keeping it (--force-config replaces it)"
    else
        # shellcheck disable=SC2086  # owner and group options, or none
        run install -m 0640 $group_args "$config" "$etc/agent.toml"
    fi
fi
have_config=0
if [ -f "$etc/agent.toml" ] || { [ -n "$config" ] && [ "$dry_run" -eq 1 ]; }; then
    have_config=1
fi
if [ "$have_config" -eq 0 ] && [ "$dry_run" -eq 0 ]; then
    sample=$("$prefix/bin/python" -c \
        'import edge_agents, pathlib; print(pathlib.Path(edge_agents.__file__).parent / "examples" / "agent.toml")')
    run install -m 0644 "$sample" "$etc/agent.toml.example"
    say "no $etc/agent.toml yet: write one (see $etc/agent.toml.example), then run this again"
fi
if [ -n "$ca_file" ]; then
    run install -m 0644 "$ca_file" "$etc/ca.crt"
fi

# -------------------------------------------------------------- 4. the service
run install -D -m 0644 "$unit_src" "$unit_dst"
if [ -n "$root" ]; then
    run systemctl --root="$root" enable "$unit_name"
    say "installed into $root"
    exit 0
fi
run systemctl daemon-reload
run systemctl enable "$unit_name"
if [ "$start" -eq 0 ]; then
    say "enabled; start it with: systemctl start $unit_name"
elif [ "$have_config" -eq 0 ]; then
    say "enabled; it starts once $etc/agent.toml exists (run this script again)"
else
    run "$prefix/bin/urbansense-agent" check "$etc/agent.toml"
    run systemctl restart "$unit_name"
    say "running; its logs: journalctl -u ${unit_name%.service} -o cat"
fi
