#!/usr/bin/env bash
# Back up a citytwin server deployment: the records (pg_dump, custom format) and the workspace folder
# (settings, Parquet data, quarantine, schemas, the twin's stores). Run as the citytwin user, e.g. daily
# from a systemd timer or cron; keep the copies off the machine.
#   deploy/backup.sh DEST        writes DEST/citytwin-YYYYmmddTHHMMSS.{dump,tar.gz}
# Environment: CITYTWIN_DATABASE (postgresql://…), CITYTWIN_WORKSPACE (the folder).
# Restore: docs/deployment.md, "Restore".
set -euo pipefail
dest=${1:?usage: $0 DEST}
: "${CITYTWIN_DATABASE:?set CITYTWIN_DATABASE}" "${CITYTWIN_WORKSPACE:?set CITYTWIN_WORKSPACE}"
stamp=$(date -u +%Y%m%dT%H%M%S)
mkdir -p "$dest"
umask 077
# 1. the records first: a dataset version is visible only once its catalog row exists, so files that
#    are newer than the dump are at worst unreferenced (never a catalog row without its files)
pg_dump --format=custom --file="$dest/citytwin-$stamp.dump" "$CITYTWIN_DATABASE"
# 2. the folder, without staging (tmp/ holds only unfinished ingests)
tar -C "$(dirname "$CITYTWIN_WORKSPACE")" --exclude="$(basename "$CITYTWIN_WORKSPACE")/tmp" \
    -czf "$dest/citytwin-$stamp.tar.gz" "$(basename "$CITYTWIN_WORKSPACE")"
echo "$dest/citytwin-$stamp.dump"
echo "$dest/citytwin-$stamp.tar.gz"
