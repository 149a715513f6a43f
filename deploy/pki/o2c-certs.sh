#!/usr/bin/env bash
# o2c fleet PKI: one CA, a client certificate per store agent, server
# certificates for the brokers, and client certificates for cloud services.
# Plain openssl (3.x); EC P-256 keys in PKCS#8 PEM, written with mode 0600.
#
#   o2c-certs.sh init [--days N]                     create the fleet CA (once)
#   o2c-certs.sh issue-agent STORE AGENT [--days N]  agent cert: CN=AGENT, OU=STORE,
#                                                    SAN URI o2c://stores/STORE/agents/AGENT
#   o2c-certs.sh issue-server NAME [--san SAN]... [--days N]
#                                                    broker cert: CN=NAME, SAN DNS:NAME
#                                                    plus each --san (DNS:x or IP:x)
#   o2c-certs.sh issue-service NAME [--days N]       cloud service cert (o2c-ingest,
#                                                    o2c-status, o2c-catalog, o2c-fleet): CN=NAME
#   o2c-certs.sh renew agent|server|service NAME [--days N]
#                                                    new key and cert, same identity;
#                                                    the old pair moves to archive/
#   o2c-certs.sh list                                every issued cert: kind, name,
#                                                    store, serial, expiry
#   o2c-certs.sh acl [BASE]                          print the Mosquitto ACL: BASE
#                                                    (default: deploy/mosquitto/o2c.acl)
#                                                    plus one block per agent, with its
#                                                    own store pinned in every topic
#
# The PKI lives in $O2C_PKI_DIR (default ./o2c-pki):
#   ca/ca.pem, ca/ca.key                 the fleet CA (keep ca.key offline)
#   agents/AGENT/{cert,key,ca}.pem       what goes to /etc/o2c-agent/tls/ on a store box
#   agents/AGENT/store                   the agent's store id (for renew and acl)
#   servers/NAME/{cert,key,ca}.pem       what goes to /etc/mosquitto/certs/
#   services/NAME/{cert,key,ca}.pem      what a cloud service mounts
#   archive/                             replaced pairs, named KIND-NAME-SERIAL-*.pem
#
# Ids follow o2c's rules: 1-64 of A-Z a-z 0-9 _ -. By convention an agent id
# starts with its store id (S001-A1 in store S001); the ACL pins the store
# either way.
set -euo pipefail

PKI=${O2C_PKI_DIR:-./o2c-pki}
DAYS_CA=3650
DAYS_LEAF=397
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() { printf 'o2c-certs: %s\n' "$*" >&2; exit 64; }
log() { printf 'o2c-certs: %s\n' "$*" >&2; }

check_id() {
  local kind=$1 id=$2
  [[ $id =~ ^[A-Za-z0-9_-]{1,64}$ ]] || die "$kind $id: use 1-64 of A-Z a-z 0-9 _ -"
}

# A certificate's CN is its Mosquitto username, so agents and cloud
# services share one namespace: services are named o2c-*, agents never are,
# and no name is issued as both. Otherwise a store box could be issued the
# name of a service and get that service's rights over every store.
check_agent_name() {
  local agent=$1
  [[ ${agent,,} != o2c-* ]] || die "agent_id $agent: names starting with o2c- are reserved for cloud services"
  [[ ! -d $PKI/services/$agent ]] || die "agent_id $agent: already issued as a service"
}

check_service_name() {
  local name=$1
  [[ $name == o2c-* ]] || die "service $name: cloud service names start with o2c- (e.g. o2c-ingest)"
  [[ ! -d $PKI/agents/$name ]] || die "service $name: already issued as an agent"
}

need_ca() {
  [[ -f $PKI/ca/ca.pem && -f $PKI/ca/ca.key ]] || die "no CA in $PKI/ca (run: $0 init)"
}

# new_key FILE: an EC P-256 key, PKCS#8 PEM, readable by its owner only.
new_key() {
  (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null)
  chmod 600 "$1"
}

# sign DIR SUBJECT EXTENSIONS DAYS: key + CSR + cert in DIR (replaced atomically).
sign() {
  local dir=$1 subject=$2 ext=$3 days=$4
  local tmp
  tmp=$(mktemp -d "$dir/.new.XXXXXX")
  new_key "$tmp/key.pem"
  openssl req -new -key "$tmp/key.pem" -subj "$subject" -out "$tmp/req.csr" 2>/dev/null
  printf '%s\n' "$ext" >"$tmp/ext.cnf"
  openssl x509 -req -in "$tmp/req.csr" -CA "$PKI/ca/ca.pem" -CAkey "$PKI/ca/ca.key" \
    -CAserial "$PKI/ca/serial" -CAcreateserial -days "$days" -sha256 \
    -extfile "$tmp/ext.cnf" -out "$tmp/cert.pem" 2>/dev/null
  cp "$PKI/ca/ca.pem" "$tmp/ca.pem"
  # Replace the pair in one step each, so a reader never sees a new cert
  # with an old key for longer than between the two renames.
  mv -f "$tmp/key.pem" "$dir/key.pem"
  mv -f "$tmp/cert.pem" "$dir/cert.pem"
  mv -f "$tmp/ca.pem" "$dir/ca.pem"
  rm -rf "$tmp"
  log "wrote $dir/cert.pem (serial $(serial_of "$dir/cert.pem")) and $dir/key.pem (0600)"
}

serial_of() { openssl x509 -in "$1" -noout -serial | cut -d= -f2; }

leaf_ext() {
  local eku=$1 san=$2
  cat <<EOF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyAgreement
extendedKeyUsage = $eku
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
subjectAltName = $san
EOF
}

parse_days() {
  DAYS=$DAYS_LEAF
  SANS=()
  while (($#)); do
    case $1 in
      --days) [[ ${2:-} =~ ^[0-9]+$ ]] || die "--days needs a number"; DAYS=$2; shift 2 ;;
      --san) [[ ${2:-} =~ ^(DNS|IP):[A-Za-z0-9.:*-]+$ ]] || die "--san DNS:name or IP:addr"; SANS+=("$2"); shift 2 ;;
      *) die "unknown argument $1" ;;
    esac
  done
}

archive() {
  local kind=$1 name=$2 dir=$3
  [[ -f $dir/cert.pem ]] || return 0
  mkdir -p "$PKI/archive"
  chmod 700 "$PKI/archive"
  local serial
  serial=$(serial_of "$dir/cert.pem")
  cp -p "$dir/cert.pem" "$PKI/archive/$kind-$name-$serial-cert.pem"
  cp -p "$dir/key.pem" "$PKI/archive/$kind-$name-$serial-key.pem"
}

cmd_init() {
  parse_days "$@"
  [[ $DAYS == "$DAYS_LEAF" ]] && DAYS=$DAYS_CA
  [[ -f $PKI/ca/ca.key ]] && die "a CA already exists in $PKI/ca"
  mkdir -p "$PKI/ca"
  chmod 700 "$PKI/ca"
  new_key "$PKI/ca/ca.key"
  openssl req -x509 -new -key "$PKI/ca/ca.key" -sha256 -days "$DAYS" \
    -subj "/O=o2c/CN=o2c fleet CA" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" \
    -out "$PKI/ca/ca.pem" 2>/dev/null
  log "fleet CA in $PKI/ca (ca.key is 0600: keep it offline)"
}

issue_agent() {
  local store=$1 agent=$2
  shift 2
  check_id store_id "$store"
  check_id agent_id "$agent"
  check_agent_name "$agent"
  parse_days "$@"
  need_ca
  local dir=$PKI/agents/$agent
  if [[ -f $dir/store && $(cat "$dir/store") != "$store" ]]; then
    die "agent $agent already belongs to store $(cat "$dir/store"); agent ids are unique fleet-wide"
  fi
  [[ $agent == "$store"-* ]] || log "note: agent id $agent does not start with its store id $store-"
  mkdir -p "$dir"
  printf '%s\n' "$store" >"$dir/store"
  sign "$dir" "/O=o2c/OU=$store/CN=$agent" \
    "$(leaf_ext clientAuth "URI:o2c://stores/$store/agents/$agent")" "$DAYS"
}

issue_server() {
  local name=$1
  shift
  parse_days "$@"
  [[ $name =~ ^[A-Za-z0-9.-]{1,253}$ ]] || die "server name $name: a DNS name"
  need_ca
  local san="DNS:$name" s
  for s in "${SANS[@]}"; do san+=",$s"; done
  mkdir -p "$PKI/servers/$name"
  sign "$PKI/servers/$name" "/O=o2c/CN=$name" "$(leaf_ext serverAuth "$san")" "$DAYS"
}

issue_service() {
  local name=$1
  shift
  check_id service "$name"
  check_service_name "$name"
  parse_days "$@"
  need_ca
  mkdir -p "$PKI/services/$name"
  sign "$PKI/services/$name" "/O=o2c/OU=cloud/CN=$name" \
    "$(leaf_ext clientAuth "URI:o2c://services/$name")" "$DAYS"
}

cmd_renew() {
  local kind=${1:-} name=${2:-}
  [[ -n $kind && -n $name ]] || die "usage: renew agent|server|service NAME [--days N]"
  shift 2
  case $kind in
    agent)
      [[ -f $PKI/agents/$name/store ]] || die "no agent $name in $PKI/agents"
      archive agent "$name" "$PKI/agents/$name"
      issue_agent "$(cat "$PKI/agents/$name/store")" "$name" "$@"
      ;;
    server)
      [[ -f $PKI/servers/$name/cert.pem ]] || die "no server $name in $PKI/servers"
      # Keep the SANs of the old certificate.
      local sans=() s
      while read -r s; do
        [[ -n $s && $s != "DNS:$name" ]] && sans+=(--san "$s")
      done < <(openssl x509 -in "$PKI/servers/$name/cert.pem" -noout -ext subjectAltName 2>/dev/null |
        tail -n +2 | tr ',' '\n' | sed -e 's/^ *//' -e 's/^IP Address:/IP:/')
      archive server "$name" "$PKI/servers/$name"
      issue_server "$name" "${sans[@]}" "$@"
      ;;
    service)
      [[ -f $PKI/services/$name/cert.pem ]] || die "no service $name in $PKI/services"
      archive service "$name" "$PKI/services/$name"
      issue_service "$name" "$@"
      ;;
    *) die "renew: kind must be agent, server or service" ;;
  esac
}

cmd_list() {
  need_ca
  printf '%-8s %-24s %-12s %-42s %s\n' KIND NAME STORE SERIAL NOT_AFTER
  local kind dir name store
  for kind in agents servers services; do
    [[ -d $PKI/$kind ]] || continue
    for dir in "$PKI/$kind"/*/; do
      [[ -f $dir/cert.pem ]] || continue
      name=$(basename "$dir")
      store=-
      [[ -f $dir/store ]] && store=$(cat "$dir/store")
      printf '%-8s %-24s %-12s %-42s %s\n' "${kind%s}" "$name" "$store" \
        "$(serial_of "$dir/cert.pem")" \
        "$(openssl x509 -in "$dir/cert.pem" -noout -enddate | cut -d= -f2)"
    done
  done
}

cmd_acl() {
  local base=${1:-$HERE/../mosquitto/o2c.acl}
  [[ -f $base ]] || die "no base ACL $base"
  cat "$base"
  printf '\n# --- agents: generated by o2c-certs.sh acl from %s ---\n' "$PKI/agents"
  local dir agent store root
  [[ -d $PKI/agents ]] || return 0
  for dir in "$PKI/agents"/*/; do
    [[ -f $dir/store && -f $dir/cert.pem ]] || continue
    agent=$(basename "$dir")
    store=$(cat "$dir/store")
    check_id agent_id "$agent"
    check_id store_id "$store"
    root="o2c/v1/stores/$store/agents/$agent"
    printf '\nuser %s\ntopic write %s/events\ntopic read %s/acks\ntopic read %s/status\ntopic write %s/resync\ntopic write %s/health\ntopic read o2c/v1/fleet/resync\ntopic read o2c/v1/stores/%s/catalog\n' \
      "$agent" "$root" "$root" "$root" "$root" "$root" "$store"
  done
}

command -v openssl >/dev/null || die "openssl is not installed"
case ${1:-} in
  init) shift; cmd_init "$@" ;;
  issue-agent) (($# >= 3)) || die "usage: issue-agent STORE AGENT [--days N]"; shift; issue_agent "$@" ;;
  issue-server) (($# >= 2)) || die "usage: issue-server NAME [--san DNS:x|IP:x]... [--days N]"; shift; issue_server "$@" ;;
  issue-service) (($# >= 2)) || die "usage: issue-service NAME [--days N]"; shift; issue_service "$@" ;;
  renew) shift; cmd_renew "$@" ;;
  list) cmd_list ;;
  acl) shift; cmd_acl "$@" ;;
  *) sed -n '2,33p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 64 ;;
esac
