#!/bin/sh
# hallflow's namespace, created once: 30 days of retention for closed cases (the application
# database keeps the audit trail beyond that; deploy/README.md). The temporal CLI reads TEMPORAL_ADDRESS.
set -eu
namespace=${1:-hallflow}
tries=0
until temporal operator cluster health >/dev/null 2>&1; do
    tries=$((tries + 1))
    [ "$tries" -lt 60 ] || { echo "Temporal at $TEMPORAL_ADDRESS is not healthy"; exit 1; }
    sleep 2
done
if temporal operator namespace describe --namespace "$namespace" >/dev/null 2>&1; then
    echo "namespace $namespace exists"
else
    temporal operator namespace create --namespace "$namespace" --retention 30d
fi
