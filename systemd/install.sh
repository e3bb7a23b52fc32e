#!/bin/sh
# Install ser-edge as a systemd service: user ser-edge (groups audio, gpio), a venv under
# /opt/ser-edge, the config in /etc/ser-edge (kept if present), state in /var/lib/ser-edge.
# Run as root from a checkout:  sudo systemd/install.sh   (--dry-run prints the steps only).
# Running it again upgrades the package and restarts the service; the config is never overwritten.
set -eu

PREFIX=/opt/ser-edge
CONF_DIR=/etc/ser-edge
STATE_DIR=/var/lib/ser-edge
UNIT=/etc/systemd/system/ser-edge.service
SVC_USER=ser-edge
SRC=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
DRY=0

usage() { echo "usage: $0 [--dry-run]"; }
for arg in "$@"; do
    case "$arg" in
        --dry-run|-n) DRY=1 ;;
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
if [ ! -f "$SRC/requirements-edge.txt" ] || [ ! -f "$SRC/systemd/ser-edge.service" ]; then
    echo "error: $SRC is not a ser-edge checkout (requirements-edge.txt or systemd/ser-edge.service missing)" >&2
    exit 2
fi

# System packages: venv and the PortAudio runtime under sounddevice (the microphone). Every Python
# package comes as a wheel (libsndfile is inside soundfile's), so nothing is compiled.
if command -v apt-get >/dev/null 2>&1; then
    missing=""
    for pkg in python3-venv libportaudio2; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
    done
    if [ -n "$missing" ]; then
        run apt-get install -y --no-install-recommends $missing
    fi
fi

# The service user: no login, no home of its own beyond the state directory.
if ! id -u "$SVC_USER" >/dev/null 2>&1; then
    run useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home --shell /usr/sbin/nologin "$SVC_USER"
fi
groups="audio"
if getent group gpio >/dev/null 2>&1; then groups="audio gpio"; fi
for g in $groups; do
    if getent group "$g" >/dev/null 2>&1 && ! id -nG "$SVC_USER" 2>/dev/null | tr ' ' '\n' | grep -qx "$g"; then
        run usermod -a -G "$g" "$SVC_USER"
    fi
done

# The venv and the package (a copy, not an editable link to this checkout).
if [ ! -x "$PREFIX/venv/bin/python" ]; then
    run install -d -m 0755 "$PREFIX"
    run "$PYTHON" -m venv "$PREFIX/venv"
fi
run "$PREFIX/venv/bin/python" -m pip install --quiet --upgrade pip
run "$PREFIX/venv/bin/python" -m pip install --quiet -r "$SRC/requirements-edge.txt"
run "$PREFIX/venv/bin/python" -m pip install --quiet --no-deps --force-reinstall "$SRC"
run install -d -m 0755 "$PREFIX/systemd"
run install -m 0644 "$SRC/systemd/README.md" "$SRC/systemd/config.example.toml" "$PREFIX/systemd/"

# Configuration: installed once, then it is the administrator's.
run install -d -m 0750 -o root -g "$SVC_USER" "$CONF_DIR"
if [ ! -f "$CONF_DIR/config.toml" ]; then
    run install -m 0640 -o root -g "$SVC_USER" "$SRC/systemd/config.example.toml" "$CONF_DIR/config.toml"
else
    echo "keeping $CONF_DIR/config.toml (compare with $PREFIX/systemd/config.example.toml for new keys)"
fi
run install -d -m 0750 -o "$SVC_USER" -g "$SVC_USER" "$STATE_DIR"

# The unit, without the gpio group on machines that have none (systemd refuses unknown groups).
if [ "$groups" = "audio gpio" ]; then
    run install -m 0644 "$SRC/systemd/ser-edge.service" "$UNIT"
else
    echo "+ sed 's/^SupplementaryGroups=audio gpio/SupplementaryGroups=audio/' $SRC/systemd/ser-edge.service > $UNIT"
    if [ "$DRY" = 0 ]; then
        sed 's/^SupplementaryGroups=audio gpio/SupplementaryGroups=audio/' "$SRC/systemd/ser-edge.service" > "$UNIT"
        chmod 0644 "$UNIT"
    fi
fi
run systemctl daemon-reload
run systemctl enable ser-edge.service
run systemctl restart ser-edge.service
echo "ser-edge installed: systemctl status ser-edge; journalctl -u ser-edge -f; edit $CONF_DIR/config.toml then systemctl reload ser-edge"
