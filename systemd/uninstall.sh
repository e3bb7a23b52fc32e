#!/bin/sh
# Remove the ser-edge service and its venv. The config (/etc/ser-edge), the state
# (/var/lib/ser-edge: the MQTT alert queue, the history of verdicts, an adapted voice profile)
# and the user stay unless --purge is given.
# Safe to run again. --dry-run prints the steps only.
set -eu

PREFIX=/opt/ser-edge
CONF_DIR=/etc/ser-edge
STATE_DIR=/var/lib/ser-edge
UNIT=/etc/systemd/system/ser-edge.service
SVC_USER=ser-edge
DRY=0
PURGE=0

usage() { echo "usage: $0 [--dry-run] [--purge]"; }
for arg in "$@"; do
    case "$arg" in
        --dry-run|-n) DRY=1 ;;
        --purge) PURGE=1 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; echo "error: unknown option $arg" >&2; exit 2 ;;
    esac
done

run() {
    echo "+ $*"
    if [ "$DRY" = 0 ]; then "$@"; fi
}

if [ "$DRY" = 0 ] && [ "$(id -u)" != 0 ]; then
    echo "error: run as root (sudo $0), or pass --dry-run to see the steps" >&2
    exit 2
fi

if [ -f "$UNIT" ]; then
    run systemctl disable --now ser-edge.service
    run rm -f "$UNIT"
    run systemctl daemon-reload
fi
if [ -d "$PREFIX" ]; then
    run rm -rf "$PREFIX"
fi
if [ "$PURGE" = 1 ]; then
    if [ -d "$CONF_DIR" ]; then run rm -rf "$CONF_DIR"; fi
    if [ -d "$STATE_DIR" ]; then run rm -rf "$STATE_DIR"; fi
    if id -u "$SVC_USER" >/dev/null 2>&1; then run userdel "$SVC_USER"; fi
else
    echo "kept $CONF_DIR, $STATE_DIR (the alert queue, the history of verdicts, any voice profile) and the user $SVC_USER (use --purge to remove them)"
fi
echo "ser-edge removed"
