#!/usr/bin/env bash
# ffcv-ssl set-up and the two things a newcomer runs (README):
#   ./run.sh demo [ffcv-ssl demo options]   install (system packages + .venv), then run the miniature study
#   ./run.sh test [pytest options]          install if needed, then run the whole test suite
# Works on a fresh Debian 12 / Ubuntu 22.04+ machine as root or as a user with sudo. Idempotent: a second
# run skips apt and pip when nothing changed.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"

verb="${1:-}"
case "$verb" in
  demo|test|install) shift ;;
  *) echo "usage: ./run.sh demo|test|install [args...]" >&2; exit 2 ;;
esac

log() { printf '\033[1m[run.sh]\033[0m %s\n' "$*" >&2; }
if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
  log "need root or sudo to install system packages"; exit 2; fi

# --- Python 3.10-3.12 (ffcv 1.0.2 and the pinned torch support these) --------------------------------
pick_python() {
  local c
  for c in "${PYTHON:-}" python3 python3.12 python3.11 python3.10; do
    [ -n "$c" ] && command -v "$c" >/dev/null 2>&1 || continue
    if "$c" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 12) else 1)' 2>/dev/null; then
      command -v "$c"; return 0
    fi
  done
  return 1
}

APT_LIBS=(libturbojpeg0-dev libopencv-dev pkg-config g++)
apt_missing() {
  local p missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  echo "${missing[@]:-}"
}
apt_install() {
  log "apt-get install $*"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

install_system() {
  local need=() py pyver
  read -r -a need <<<"$(apt_missing "${APT_LIBS[@]}")"
  py="$(pick_python || true)"
  if [ -z "$py" ]; then
    need+=(python3 python3-venv python3-dev)
  else
    pyver="$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    # Debian splits venv/ensurepip and the C headers (ffcv compiles a C extension) into separate packages
    "$py" -c 'import ensurepip, venv' 2>/dev/null || need+=("python${pyver}-venv")
    [ -f "$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" ] || need+=("python${pyver}-dev")
  fi
  if [ "${#need[@]}" -gt 0 ] && [ -n "${need[0]}" ]; then apt_install "${need[@]}"; fi
  PY="$(pick_python)" || { log "no Python 3.10-3.12 found; install one (e.g. apt-get install python3.11)"; exit 2; }
}

quiet_pip() { "$@" 2> >(grep -v "^WARNING: Location 'file://.*' is ignored" >&2); }

install_python() {
  local stamp=".venv/.installed" want
  # setup.py and the C sources: an edited extension is rebuilt (the editable install builds it in place)
  want="$(cat setup.py ffcv_ssl/ops/*.c | sha256sum | cut -d' ' -f1)-$("$PY" -c 'import sys; print(sys.version.split()[0])')"
  if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  log "creating .venv with $PY and installing ffcv-ssl (first time: a few minutes; ffcv compiles from source)"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  # PYTHONWARNINGS: setuptools' editable-install notice ("be careful with folders ... same name") is a screen of
  # text about the folder we install from; quiet_pip drops pip's notices about absent local index folders.
  PYTHONWARNINGS="ignore:Editable installation" quiet_pip .venv/bin/python -m pip install -q --upgrade pip setuptools wheel
  PYTHONWARNINGS="ignore:Editable installation" quiet_pip .venv/bin/python -m pip install -q -e ".[test]"
  echo "$want" >"$stamp"
}

install_system
install_python

case "$verb" in
  install) log "installed: $(.venv/bin/ffcv-ssl --version)" ;;
  demo) exec .venv/bin/ffcv-ssl demo "$@" ;;
  test)
    set +e
    .venv/bin/python -m pytest "$@"
    rc=$?
    set -e
    if [ "$rc" -eq 5 ]; then log "pytest collected no tests: treating as a failure"; exit 1; fi
    exit "$rc" ;;
esac
