#!/bin/sh
# urbansense: make the TLS files of the MQTT broker: a private CA and a broker certificate.
#
# Usage: deploy/mosquitto/make-certs.sh [-d DIR] [-f] NAME...
#   NAME  a host name or IP address the gateways reach the broker at, e.g.
#         mqtt.city.example or 203.0.113.10 (at least one). `mosquitto` (the stack's
#         internal name, used by the bridge) and `localhost` are always added.
#   -d    where to write the files (default deploy/secrets/tls, created mode 0700)
#   -f    issue a new broker certificate even if one exists (the CA is kept)
#
# Writes into DIR:
#   ca.key      the CA's private key (0600). Keep it offline once the certificates
#               are issued: whoever holds it can impersonate the broker.
#   ca.crt      the CA certificate: copy it to every gateway (broker.tls.ca_file).
#   broker.key  the broker's private key (0600; given to uid 1883, the broker's user
#               in its image, when this script runs as root).
#   broker.crt  the broker's certificate, valid for the NAMEs, for 825 days.
#
# Idempotent: an existing CA is reused, and an existing broker certificate is kept
# unless -f is given, so gateways that trust ca.crt keep working across renewals.
# Needs only openssl.
set -eu

dir=deploy/secrets/tls
force=0
while getopts d:fh opt; do
    case $opt in
        d) dir=$OPTARG ;;
        f) force=1 ;;
        h) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "usage: $0 [-d DIR] [-f] NAME..." >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
if [ $# -eq 0 ]; then
    echo "make-certs.sh: give at least one NAME the gateways connect to (host name or IP)" >&2
    exit 2
fi
command -v openssl >/dev/null 2>&1 || { echo "make-certs.sh: openssl is missing (apt-get install openssl)" >&2; exit 1; }

# The broker user of the eclipse-mosquitto image; it must be able to read the key.
broker_uid=${BROKER_UID:-1883}

umask 077
mkdir -p "$dir"
chmod 0700 "$dir"

if [ ! -s "$dir/ca.key" ] || [ ! -s "$dir/ca.crt" ]; then
    echo "make-certs.sh: creating the CA in $dir"
    openssl req -x509 -new -newkey rsa:4096 -sha256 -nodes -days 3650 \
        -subj "/O=urbansense/CN=urbansense MQTT CA" \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
else
    echo "make-certs.sh: reusing the CA in $dir"
fi

if [ -s "$dir/broker.crt" ] && [ "$force" -eq 0 ]; then
    echo "make-certs.sh: $dir/broker.crt exists; -f issues a new one"
    exit 0
fi

# subjectAltName: every NAME, as an IP address or a DNS name, then the fixed ones.
san=""
for name in "$@" mosquitto localhost; do
    case $name in
        *[!0-9.]*) entry="DNS:$name" ;;
        *) entry="IP:$name" ;;
    esac
    case ",$san," in
        *",$entry,"*) ;;
        *) san="${san:+$san,}$entry" ;;
    esac
done

extensions=$(mktemp)
request=$(mktemp)
trap 'rm -f "$extensions" "$request"' EXIT
cat > "$extensions" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$san
EOF
openssl req -new -newkey rsa:2048 -sha256 -nodes -subj "/O=urbansense/CN=$1" \
    -keyout "$dir/broker.key.new" -out "$request" 2>/dev/null
openssl x509 -req -sha256 -days 825 -in "$request" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
    -CAcreateserial -extfile "$extensions" -out "$dir/broker.crt.new" 2>/dev/null
chmod 0600 "$dir/broker.key.new"
chmod 0644 "$dir/broker.crt.new" "$dir/ca.crt"
if [ "$(id -u)" = "0" ]; then
    chown "$broker_uid:$broker_uid" "$dir/broker.key.new"
else
    echo "make-certs.sh: not root: run  sudo chown $broker_uid:$broker_uid $dir/broker.key" >&2
    echo "              so that the broker (uid $broker_uid in its container) can read it" >&2
fi
mv "$dir/broker.key.new" "$dir/broker.key"
mv "$dir/broker.crt.new" "$dir/broker.crt"
echo "make-certs.sh: issued $dir/broker.crt for $san"
