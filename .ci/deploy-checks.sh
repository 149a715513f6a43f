#!/usr/bin/env bash
# Deploy checks, run by .ci/run (and by hand):
#   .ci/deploy-checks.sh units      systemd-analyze verify on every unit file
#   .ci/deploy-checks.sh manifests  deploy/cloud/check_manifests.py (YAML, images, ports)
#   .ci/deploy-checks.sh deb        cargo deb -p o2c-agent, dpkg -i, check-config, remove, purge
#   .ci/deploy-checks.sh alerts     deploy/cloud/alerts/*.yml and deploy/monitoring/*.rules.yml:
#                                   promtool check rules (and promtool test rules on
#                                   deploy/monitoring/*.test.yml) when promtool is installed;
#                                   always: every metric a rule names is one the cloud code
#                                   registers
#   .ci/deploy-checks.sh all        the four, in this order
# Needs root for `deb` (dpkg). Installs cargo-deb from crates.io if missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH:/usr/sbin:/sbin"

log() { printf '[deploy-checks] %s\n' "$*" >&2; }
die() { printf '[deploy-checks] error: %s\n' "$*" >&2; exit 1; }

# Cleanup runs on every exit, failures included: no temp root left behind,
# and no o2c-agent package left installed on the CI machine.
ROOT_TMP=
PKI_TMP=
DEB_INSTALLED=
cleanup() {
  [[ -n $ROOT_TMP ]] && rm -rf "$ROOT_TMP"
  [[ -n $PKI_TMP ]] && rm -rf "$PKI_TMP"
  [[ -n $DEB_INSTALLED ]] && dpkg --purge o2c-agent >/dev/null 2>&1
  return 0
}
trap cleanup EXIT

# systemd-analyze verify works without systemd running (as in a container),
# given an alternate root that has the stock units (sysinit.target & co.) and
# an executable at each ExecStart path. --man=no: our Documentation= URLs are
# not man pages.
check_units() {
  command -v systemd-analyze >/dev/null || die "systemd-analyze missing (apt-get install systemd)"
  local root
  root=$(mktemp -d)
  ROOT_TMP=$root
  mkdir -p "$root/usr/lib/systemd" "$root/etc/systemd/system" "$root/usr/bin"
  cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
  local units=() f name
  for f in deploy/systemd/*.service deploy/cloud/systemd/*.service; do
    cp "$f" "$root/etc/systemd/system/"
    name=$(basename "$f")
    if [[ $name == *@.service ]]; then
      # A template is verified through an instance.
      ln -s "$name" "$root/etc/systemd/system/${name%@.service}@check.service"
      name=${name%@.service}@check.service
    fi
    units+=("$name")
  done
  for f in o2c-agent o2c-cloud; do
    printf '#!/bin/sh\nexit 0\n' >"$root/usr/bin/$f"
    chmod 755 "$root/usr/bin/$f"
  done
  log "systemd-analyze verify --root=… --man=no ${units[*]}"
  # verify prints problems but may still exit 0 for some: fail on any output.
  local out
  out=$(systemd-analyze verify --root="$root" --man=no "${units[@]}" 2>&1) || { echo "$out" >&2; die "systemd-analyze verify failed"; }
  if [[ -n $out ]]; then
    echo "$out" >&2
    die "systemd-analyze verify reported problems"
  fi
  systemd-analyze security --offline=yes --root="$root" o2c-agent.service 2>/dev/null | tail -n 1 || true
  log "units ok: ${units[*]}"
}

check_manifests() {
  # Debian's python3 has python3-yaml; a pyenv python on PATH may not.
  /usr/bin/python3 deploy/cloud/check_manifests.py
}

check_deb() {
  ((EUID == 0)) || die "the deb check installs a package: run as root"
  if ! command -v cargo-deb >/dev/null; then
    log "installing cargo-deb (cargo install cargo-deb --locked; cached in ~/.cargo/bin)"
    cargo install cargo-deb --locked
  fi
  if dpkg -s o2c-agent >/dev/null 2>&1; then
    die "o2c-agent is already installed here; remove it first (dpkg --purge o2c-agent)"
  fi
  log "cargo deb -p o2c-agent"
  local deb
  deb=$(cargo deb -p o2c-agent --strip | tail -n 1)
  [[ -f $deb ]] || die "cargo deb did not print a package path (got: $deb)"
  dpkg-deb --info "$deb" | sed -n '/Package:/,/Depends:/p'
  dpkg-deb --contents "$deb"
  DEB_INSTALLED=1
  dpkg -i "$deb"
  getent passwd o2c-agent >/dev/null || die "postinst did not create the o2c-agent user"
  [[ -L /etc/systemd/system/multi-user.target.wants/o2c-agent.service ]] || die "postinst did not enable o2c-agent.service"
  [[ $(stat -c '%U:%G %a' /etc/o2c-agent/agent.toml) == "root:o2c-agent 640" ]] || die "agent.toml ownership/mode"
  # As shipped, the example names TLS files that enrolment puts in place, so
  # check-config must refuse it (exit 64, naming the key) until then.
  local out rc=0
  out=$(setpriv --reuid=o2c-agent --regid=o2c-agent --init-groups \
    /usr/bin/o2c-agent check-config --config /etc/o2c-agent/agent.toml 2>&1 >/dev/null) || rc=$?
  ((rc == 64)) || die "check-config before enrolment: exit $rc, want 64 ($out)"
  grep -q 'mqtt.tls.ca_file' <<<"$out" || die "check-config before enrolment must name mqtt.tls.ca_file: $out"
  log "check-config before enrolment: refused as expected ($out)"
  # Enrolment step 3 of docs/operations.md: the agent's TLS material from the
  # fleet PKI, root-owned and readable by the agent only.
  local pki
  pki=$(mktemp -d)
  PKI_TMP=$pki
  O2C_PKI_DIR=$pki deploy/pki/o2c-certs.sh init >/dev/null 2>&1
  O2C_PKI_DIR=$pki deploy/pki/o2c-certs.sh issue-agent S001 S001-A1 >/dev/null 2>&1
  # A store box can never be issued a cloud service's name (the CN is the
  # broker username).
  local name
  for name in o2c-ingest o2c-status; do
    if O2C_PKI_DIR=$pki deploy/pki/o2c-certs.sh issue-agent S001 "$name" >/dev/null 2>&1; then
      die "o2c-certs.sh issued an agent certificate named $name"
    fi
  done
  install -o root -g o2c-agent -m 0640 "$pki"/agents/S001-A1/{ca,cert,key}.pem /etc/o2c-agent/tls/
  # The example config, now enrolled, must be valid, read as the service user.
  setpriv --reuid=o2c-agent --regid=o2c-agent --init-groups \
    /usr/bin/o2c-agent check-config --config /etc/o2c-agent/agent.toml >/dev/null
  log "check-config on the shipped example after enrolment: ok"
  systemd-analyze verify --man=no o2c-agent.service
  dpkg -r o2c-agent
  [[ ! -e /usr/bin/o2c-agent && ! -e /lib/systemd/system/o2c-agent.service ]] || die "dpkg -r left files behind"
  dpkg --purge o2c-agent
  local left=()
  for f in /etc/o2c-agent /etc/systemd/system/o2c-agent.service /etc/systemd/system/multi-user.target.wants/o2c-agent.service; do
    [[ -e $f || -L $f ]] && left+=("$f")
  done
  getent passwd o2c-agent >/dev/null && left+=("user o2c-agent")
  ((${#left[@]} == 0)) || die "purge left: ${left[*]}"
  DEB_INSTALLED=
  log "deb ok: installed, checked, removed and purged cleanly"
}

# Alert rules: valid rules (promtool, where installed) that watch metrics the
# code really exports (a renamed metric would leave an alert that never fires).
check_alerts() {
  local f
  for f in deploy/cloud/alerts/*.yml deploy/monitoring/*.rules.yml; do
    if command -v promtool >/dev/null; then
      promtool check rules "$f" >&2 || die "promtool check rules $f failed"
    fi
    /usr/bin/python3 - "$f" <<'PY' || die "alert rules $f name unknown metrics"
import re, sys, pathlib, yaml
doc = yaml.safe_load(open(sys.argv[1]))
src = "".join(p.read_text() for p in pathlib.Path("cloud").rglob("*.rs"))
bad = []
for g in doc["groups"]:
    for r in g["rules"]:
        assert r.get("alert") and r.get("expr"), r
        for name in set(re.findall(r"\bo2c_[a-z_]+", r["expr"])):
            # Registered whole (catalog, analytics: "o2c_analytics_events"), or
            # under a registry prefix (saga, ingest: with_prefix + "consumer_lag").
            full = re.sub(r"_total$", "", name)
            prefix = next((p for p in ("o2c_saga_", "o2c_ingest_") if name.startswith(p)), None)
            base = name[len(prefix):] if prefix else name
            base = re.sub(r"_total$", "", base)
            if f'"{full}"' not in src and (prefix is None or f'"{base}"' not in src):
                bad.append((r["alert"], name))
if bad:
    print("unknown metrics:", bad, file=sys.stderr)
    sys.exit(1)
PY
    log "alerts ok: $f"
  done
  # Unit tests of the rules (series in, alerts out): e.g. the fleet's
  # offline alert fires only while the store is open.
  if command -v promtool >/dev/null; then
    for f in deploy/monitoring/*.test.yml; do
      promtool test rules "$f" >&2 || die "promtool test rules $f failed"
      log "alert tests ok: $f"
    done
  fi
}

case ${1:-all} in
  units) check_units ;;
  manifests) check_manifests ;;
  deb) check_deb ;;
  alerts) check_alerts ;;
  all) check_units; check_manifests; check_alerts; check_deb ;;
  *) echo "usage: $0 units|manifests|deb|alerts|all" >&2; exit 64 ;;
esac
