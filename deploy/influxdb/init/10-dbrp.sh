#!/bin/sh
# urbansense: map the InfluxQL database of the boards and the stream to the bucket.
#
# The influxdb:2 image runs this once, right after its first setup
# (DOCKER_INFLUXDB_INIT_MODE=setup), with the influx CLI pointed at the new instance.
# It creates the DBRP mapping `<bucket>/autogen` -> the bucket, so that
#   - the stream workers write through the 1.x-compatible /write?db=<bucket> endpoint
#     (URBANSENSE_INFLUX_API=v1, authenticated with the token), and
#   - Grafana's InfluxQL data source queries /query?db=<bucket>
# both land in the bucket that setup created. Safe to run again: an existing mapping
# is left alone.
set -eu

bucket=${DOCKER_INFLUXDB_INIT_BUCKET:?the influxdb image sets DOCKER_INFLUXDB_INIT_BUCKET}
org=${DOCKER_INFLUXDB_INIT_ORG:?the influxdb image sets DOCKER_INFLUXDB_INIT_ORG}
token=${DOCKER_INFLUXDB_INIT_ADMIN_TOKEN:?set INFLUX_TOKEN in deploy/.env}

if influx v1 dbrp list --org "$org" --token "$token" --db "$bucket" --hide-headers 2>/dev/null \
        | grep -q .; then
    echo "urbansense: DBRP mapping for database $bucket exists"
    exit 0
fi
bucket_id=$(influx bucket list --org "$org" --token "$token" --name "$bucket" --hide-headers \
    | cut -f1)
if [ -z "$bucket_id" ]; then
    echo "urbansense: bucket $bucket not found in org $org" >&2
    exit 1
fi
influx v1 dbrp create --org "$org" --token "$token" \
    --db "$bucket" --rp autogen --bucket-id "$bucket_id" --default
echo "urbansense: InfluxQL database $bucket (retention policy autogen) -> bucket $bucket"
