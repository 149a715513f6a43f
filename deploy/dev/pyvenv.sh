# Sourced by the dev scripts that install a pinned PyPI package into a venv
# under the state dir (schemathesis.sh, aiosmtpd.sh, phoenix.sh): the state
# dir, log and die, and pyvenv_install.

STATE_DIR=${O2C_DEV_DIR:-$HOME/.local/state/o2c-dev}

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] error: %s\n' "$*" >&2; exit 1; }

# pyvenv_installed VENV PACKAGE VERSION: VENV has PACKAGE at VERSION.
pyvenv_installed() {
  local venv=$1 package=$2 version=$3 have
  [[ -x $venv/bin/python3 ]] || return 1
  have=$("$venv/bin/python3" -c \
    'import sys, importlib.metadata as m; print(m.version(sys.argv[1]))' "$package" \
    2>/dev/null) || return 1
  [[ $have == "$version" ]]
}

# pyvenv_install VENV PACKAGE VERSION [NOTE]: PACKAGE==VERSION from PyPI
# into VENV, unless it is there already; a venv of another version is
# upgraded or downgraded in place. NOTE (e.g. "about 2 minutes") is logged.
pyvenv_install() {
  local venv=$1 package=$2 version=$3 note=${4:-}
  if pyvenv_installed "$venv" "$package" "$version"; then
    log "$package: $version installed ($venv)"
    return
  fi
  log "$package: installing $package $version into $venv${note:+ ($note)}"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv" || die "python3 cannot make a venv (apt-get install python3-venv)"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$package==$version"
  pyvenv_installed "$venv" "$package" "$version" ||
    die "$package $version did not install into $venv"
  log "$package: installed ($venv)"
}
