#!/usr/bin/env bash
# Makes a private certificate authority and the certificates a TLS cluster needs, with openssl.
#
#   deploy/tls/make-certs.sh [options] DIR [SAN ...]
#
# In DIR (created if missing):
#   ca.pem, ca-key.pem            the CA (give ca.pem to every process as --tls-ca; keep ca-key.pem offline)
#   server.pem, server-key.pem    ps-server's certificate, for the SANs given (default: DNS:localhost IP:127.0.0.1)
#   worker.pem, worker-key.pem    a client certificate for ps-worker (CN=worker)
#   psctl.pem, psctl-key.pem      a client certificate for psctl (CN=psctl)
# A SAN is DNS:NAME or IP:ADDRESS; a bare argument is taken as an IP when it looks like one, else a DNS name.
# Clients check the server's certificate against the address they dial (or --tls-server-name), so list
# every name and address workers and psctl use to reach the server.
#
# Options:
#   --days N          validity of every certificate, in days (default 365)
#   --client NAME     also make NAME.pem and NAME-key.pem, a client certificate with CN=NAME (repeatable)
#   --expired NAME    also make NAME.pem and NAME-key.pem, valid for the server's SANs, as a client and as a
#                     server, whose validity ended yesterday (for tests: openssl x509 -days cannot be negative,
#                     so it is signed with `openssl ca -startdate -enddate`) (repeatable)
#   --ca-name CN      the CA's common name (default "ps-cluster test CA"); two runs into two folders make two
#                     unrelated CAs either way
# An existing CA in DIR (ca.pem and ca-key.pem) is reused, so more certificates can be added to it later.
# Keys are EC P-256 (fast handshakes), unencrypted PEM readable by the owner only.
set -euo pipefail

days=365
ca_name="ps-cluster test CA"
clients=(worker psctl)
expired=()
sans=()
dir=""
while (($#)); do
    case "$1" in
        --days) days=$2; shift 2 ;;
        --client) clients+=("$2"); shift 2 ;;
        --expired) expired+=("$2"); shift 2 ;;
        --ca-name) ca_name=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "make-certs.sh: unknown option '$1'" >&2; exit 2 ;;
        *) if [[ -z "$dir" ]]; then dir=$1; else sans+=("$1"); fi; shift ;;
    esac
done
[[ -n "$dir" ]] || { echo "usage: deploy/tls/make-certs.sh [--days N] [--client NAME] [--expired NAME] DIR [SAN ...]" >&2; exit 2; }
command -v openssl >/dev/null || { echo "make-certs.sh: openssl not found (apt-get install openssl)" >&2; exit 1; }
((${#sans[@]})) || sans=(DNS:localhost IP:127.0.0.1)

san_list=""
for s in "${sans[@]}"; do
    case "$s" in
        DNS:*|IP:*) ;;
        *:*:*|*[0-9].[0-9]*.[0-9]*.[0-9]*) s="IP:$s" ;;
        *) s="DNS:$s" ;;
    esac
    san_list+="${san_list:+,}$s"
done

mkdir -p "$dir"
umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# `openssl ca` signs every certificate: it is the one tool that takes explicit start and end dates.
cat > "$work/ca.cnf" <<EOF
[ca]
default_ca = local
[local]
database = $work/index.txt
new_certs_dir = $work
serial = $work/serial
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none
[any]
commonName = supplied
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = $san_list
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[both_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = $san_list
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
: > "$work/index.txt"
# A random serial: certificates from two runs on one CA never share one.
openssl rand -hex 16 > "$work/serial"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# sign NAME CN EXTENSIONS [openssl ca date options...]
sign() {
    local name=$1 cn=$2 ext=$3
    shift 3
    key "$dir/$name-key.pem"
    openssl req -new -key "$dir/$name-key.pem" -subj "/CN=$cn" -out "$work/$name.csr"
    openssl ca -batch -notext -config "$work/ca.cnf" -cert "$dir/ca.pem" -keyfile "$dir/ca-key.pem" \
        -extfile "$work/ca.cnf" -extensions "$ext" -in "$work/$name.csr" -out "$dir/$name.pem" "$@" 2>"$work/ca.log" \
        || { cat "$work/ca.log" >&2; exit 1; }
}

if [[ ! -f "$dir/ca.pem" || ! -f "$dir/ca-key.pem" ]]; then
    key "$dir/ca-key.pem"
    openssl req -new -x509 -key "$dir/ca-key.pem" -subj "/CN=$ca_name" -days $((days * 2)) \
        -config "$work/ca.cnf" -extensions ca_ext -out "$dir/ca.pem"
fi
sign server "ps-server" server_ext -days "$days"
for c in "${clients[@]}"; do sign "$c" "$c" client_ext -days "$days"; done
for e in "${expired[@]}"; do
    # Valid for one day, ending yesterday (UTC, YYMMDDHHMMSSZ).
    sign "$e" "$e" both_ext -startdate "$(date -u -d '2 days ago' +%y%m%d%H%M%SZ)" \
        -enddate "$(date -u -d '1 day ago' +%y%m%d%H%M%SZ)"
done
chmod 644 "$dir"/*.pem
chmod 600 "$dir"/*-key.pem
echo "make-certs: CA and certificates in $dir (server SANs: $san_list)"
