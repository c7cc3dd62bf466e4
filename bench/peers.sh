# bench/peers.sh — sourced by bench/run.sh (inside the bench network
# namespace): writes the certificates, the origin's files and every server's
# configuration into $W, and starts/stops each server. Each start_* function
# prints the pid to watch (the whole process tree under it is measured).
# Needs: W (work dir), NCPU, BUILD, ROOT, SHOJI_DB_SRC.

ORIGIN=origin.bench.test
EXCLUDED=excluded.bench.test
# FIRST_TOTAL (set by run.sh): how many never-seen names the first-contact
# series needs in the whole run (new1..newN.bench.test)
P_SHOJI=3128 P_SQUID=3129 P_MITM=3130 P_PRIVOXY=3131 P_TINY=3132
P_ECHO=8443 # bench/hopfloor.c's echo behind tinyproxy (which tunnels only to listed ports)
P_RELAY=3133 # the null-relay configuration: bench/hopfloor.c forwarding to the origin

log() { echo "bench: $*" >&2; }

first_names() { # the short names new1 .. new$FIRST_TOTAL
  local i
  for i in $(seq 1 "${FIRST_TOTAL:-0}"); do echo "new$i"; done
}

# One TLS server block of the origin: NAME (short), extra listen options.
nginx_tls_server() {
  cat <<EOF
  server {
    listen 127.0.0.1:443 ssl${2:-}; server_name $1.bench.test;
    ssl_certificate $W/pki/$1.crt; ssl_certificate_key $W/pki/$1.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:bench:10m;
    root $W/www;
  }
EOF
}

wait_port() { # PORT [SECONDS]: until something accepts on 127.0.0.1:PORT
  local end=$((SECONDS + ${2:-20}))
  while ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
    [ $SECONDS -lt $end ] || { log "nothing listens on port $1"; return 1; }
    sleep 0.2
  done
}

make_certs() {
  local d=$W/pki
  mkdir -p "$d"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=shoji bench origin CA" -keyout "$d/ca.key" -out "$d/ca.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  # one certificate per name: a certificate naming the excluded host would
  # make shoji tunnel the decode test too (exclusions also match certificate
  # names); the first-contact names (new1..newN) get one each for the same reason
  local name
  for name in origin excluded $(first_names); do
    local host=$name.bench.test
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -subj "/CN=$host" -keyout "$d/$name.key" -out "$d/$name.csr" 2>/dev/null
    printf 'subjectAltName=DNS:%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
      "$host" > "$d/$name.ext"
    openssl x509 -req -in "$d/$name.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
      -days 30 -extfile "$d/$name.ext" -out "$d/$name.crt" 2>/dev/null
  done
  # privoxy signs with mbedTLS: an RSA CA it can read (key and cert in PEM)
  mkdir -p "$W/privoxy/ca" "$W/privoxy/certs"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=privoxy bench CA" \
    -keyout "$W/privoxy/ca/cakey.pem" -out "$W/privoxy/ca/cacert.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  # squid: its own signing CA (cert + key in one PEM)
  mkdir -p "$W/squid"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=squid bench CA" -keyout "$W/squid/ca.key" -out "$W/squid/ca.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  cat "$W/squid/ca.crt" "$W/squid/ca.key" > "$W/squid/ca.pem"
}

make_files() {
  mkdir -p "$W/www"
  head -c 1024 /dev/urandom > "$W/www/1k"
  head -c 102400 /dev/urandom > "$W/www/100k"
  head -c 10485760 /dev/urandom > "$W/www/10m"
  chmod -R a+rX "$W/www"
}

start_nginx() {
  mkdir -p "$W/nginx/tmp"
  cat > "$W/nginx/nginx.conf" <<EOF
user root;
worker_processes $NCPU;
worker_rlimit_nofile $(ulimit -Hn);
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log warn;
events { worker_connections $(( $(ulimit -Hn) < 40000 ? $(ulimit -Hn) : 40000 )); }
http {
  access_log off;
  sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_timeout 300s; keepalive_requests 100000000;
  client_body_temp_path $W/nginx/tmp/body; proxy_temp_path $W/nginx/tmp/proxy;
  fastcgi_temp_path $W/nginx/tmp/fcgi; uwsgi_temp_path $W/nginx/tmp/uwsgi;
  scgi_temp_path $W/nginx/tmp/scgi;
  types { } default_type application/octet-stream;
$(nginx_tls_server origin " reuseport")
$(for n in excluded $(first_names); do nginx_tls_server "$n"; done)
  server { listen 127.0.0.1:80 reuseport; server_name $ORIGIN; root $W/www; }
}
EOF
  nginx -c "$W/nginx/nginx.conf" -g 'daemon on;' || return 1
  wait_port 443 && wait_port 80 && cat "$W/nginx/nginx.pid"
}

# The shoji policy: the full category database, 1,000 exclusion patterns
# (plus the tunnel test's host), 100 disabled applications.
make_policy() {
  local db=$W/shoji/categories.db
  mkdir -p "$W/shoji/state"
  "$BUILD/shoji" catdb compile "$SHOJI_DB_SRC" -o "$db" --quiet >&2 || return 1
  /usr/bin/python3 - "$W/shoji/policy.json" "$EXCLUDED" <<'EOF'
import json, sys
path, excluded = sys.argv[1], sys.argv[2]
ex = [excluded]
for i in range(999):
    k = i % 4
    if k == 2:
        ex.append("10.%d.%d.0/24" % (i % 250, i // 250))
    else:
        ex.append(["*.excl%d.example.com", "host%d.excluded.example.net", "",
                   "*.vendor%d.example.org"][k] % i)
apps = ["benchapp%03d" % i for i in range(90)]
apps += [{"app": "hostapp%02d" % i, "hosts": ["*.app%d.example.com" % i]} for i in range(10)]
pol = {"version": 1, "name": "bench: full category db, 1000 exclusions, 100 disabled apps",
       "default_action": "allow", "category_db": "categories.db",
       "categories": {"adult": "block", "gambling": "block", "malware": "block",
                      "phishing": "block", "games": "view_only"},
       "block": ["*.blocked.example"],
       "decode": {"enabled": True, "exclude_hosts": ex},
       "disabled_apps": apps}
json.dump(pol, open(path, "w"), indent=1)
EOF
}

start_shoji() {
  if [ ! -f "$W/shoji/state/ca.crt" ]; then
    "$BUILD/shoji" ca init --state-dir "$W/shoji/state" >/dev/null || return 1
  fi
  "$BUILD/shoji" run --listen 127.0.0.1:$P_SHOJI --state-dir "$W/shoji/state" \
    --policy "$W/shoji/policy.json" --upstream-ca "$W/pki/ca.crt" \
    --access-log /dev/null --workers "$SHOJI_WORKERS" --max-connections 30000 \
    >"$W/shoji/stdout.log" 2>"$W/shoji/stderr.log" &
  local pid=$!
  wait_port $P_SHOJI || return 1
  echo $pid
}

# A do-nothing hop in front of the origin (bench/hopfloor.c --relay-listen:
# a process per connection that forwards bytes both ways): what any proxy's
# figures would be if it cost nothing but being a hop.
start_null_relay() {
  "$BUILD/hopfloor" --relay-listen $P_RELAY --relay-to 127.0.0.1:443 \
    >"$W/null-relay.log" 2>&1 &
  local pid=$!
  wait_port $P_RELAY || return 1
  echo $pid
}

start_squid() {
  local d=$W/squid
  mkdir -p "$d/run" "$d/cache"
  /usr/lib/squid/security_file_certgen -c -s "$d/ssl_db" -M 16MB >/dev/null
  chown -R proxy:proxy "$d"
  cat > "$d/squid.conf" <<EOF
workers $SQUID_WORKERS
http_port 127.0.0.1:$P_SQUID ssl-bump tls-cert=$d/ca.pem generate-host-certificates=on dynamic_cert_mem_cache_size=16MB
sslcrtd_program /usr/lib/squid/security_file_certgen -s $d/ssl_db -M 16MB
sslcrtd_children 8 startup=2 idle=1
acl step1 at_step SslBump1
ssl_bump peek step1
ssl_bump bump all
tls_outgoing_options cafile=$W/pki/ca.crt
http_access allow localhost
http_access deny all
cache deny all
cache_mem 8 MB
access_log none
cache_log $d/cache.log
pid_filename $d/run/squid.pid
coredump_dir $d/cache
max_filedescriptors 65536
shutdown_lifetime 1 seconds
visible_hostname shoji-bench
cache_effective_user proxy
client_persistent_connections on
server_persistent_connections on
EOF
  # -n: a service name of its own, so the SMP IPC sockets (/run/squid/NAME-*.ipc)
  # and shared memory segments do not collide with another bench's Squid (the
  # file system is shared across network namespaces; with the default name the
  # workers of one Squid would take their listening socket from the other's)
  squid -n "shojibench$$" -f "$d/squid.conf" || return 1
  wait_port $P_SQUID 30 || return 1
  cat "$d/run/squid.pid"
}

start_mitmproxy() {
  mkdir -p "$W/mitm"
  mitmdump -q --listen-host 127.0.0.1 --listen-port $P_MITM --set confdir="$W/mitm" \
    --set ssl_verify_upstream_trusted_ca="$W/pki/ca.crt" --set stream_large_bodies=1m \
    >"$W/mitm/stdout.log" 2>&1 &
  local pid=$!
  wait_port $P_MITM 30 || return 1
  echo $pid
}

start_privoxy() {
  local d=$W/privoxy
  cat > "$d/bench.action" <<EOF
{+https-inspection}
/
EOF
  cat > "$d/config" <<EOF
confdir $d
logdir $d
actionsfile $d/bench.action
listen-address 127.0.0.1:$P_PRIVOXY
toggle 1
enable-remote-toggle 0
enable-edit-actions 0
buffer-limit 4096
keep-alive-timeout 300
default-server-timeout 300
connection-sharing 1
socket-timeout 300
max-client-connections 20000
ca-directory $d/ca
ca-cert-file cacert.crt
ca-key-file cakey.pem
certificate-directory $d/certs
trusted-cas-file $W/pki/ca.crt
EOF
  privoxy --no-daemon "$d/config" >"$d/stdout.log" 2>&1 &
  local pid=$!
  wait_port $P_PRIVOXY || return 1
  echo $pid
}

start_tinyproxy() {
  local d=$W/tinyproxy
  mkdir -p "$d"
  chown nobody "$d"
  cat > "$d/tinyproxy.conf" <<EOF
User nobody
Group nogroup
Port $P_TINY
Listen 127.0.0.1
Timeout 600
MaxClients 20000
Allow 127.0.0.1
ConnectPort 443
ConnectPort $P_ECHO
LogLevel Critical
PidFile "$d/tinyproxy.pid"
EOF
  tinyproxy -d -c "$d/tinyproxy.conf" >"$d/stdout.log" 2>&1 &
  local pid=$!
  wait_port $P_TINY || return 1
  echo $pid
}

# The RSS (KiB) of a process and all its descendants.
rss_tree() {
  ps -e -o pid=,ppid=,rss= | awk -v root="$1" '
    { pp[$1] = $2; rss[$1] = $3 }
    END { for (p in pp) { q = p; while (q != "" && q != root && q > 1) q = pp[q];
                          if (q == root) sum += rss[p] } print sum + 0 }'
}

# The soft RLIMIT_NOFILE of a process ("?" if it is gone).
fd_limit() {
  awk '/^Max open files/ { print $4 }' "/proc/$1/limits" 2>/dev/null || echo "?"
}

versions() {
  echo "- nginx: $(nginx -v 2>&1 | sed 's/.*version: //')"
  echo "- shoji: $(git -C "$ROOT" rev-parse --short HEAD) ($(basename "$BUILD"), $(grep -m1 CMAKE_BUILD_TYPE: "$BUILD/CMakeCache.txt" | cut -d= -f2))"
  echo "- Squid: $(squid -v | head -1 | sed 's/Squid Cache: Version //') (squid-openssl $(dpkg-query -W -f='${Version}' squid-openssl))"
  echo "- mitmproxy: $(mitmdump --version 2>/dev/null | head -1 | awk '{print $2}')"
  echo "- privoxy: $(privoxy --version | head -1 | awk '{print $3}') ($(dpkg-query -W -f='${Version}' privoxy), mbedTLS)"
  echo "- tinyproxy: $(tinyproxy -v | awk '{print $2}')"
  echo "- OpenSSL: $(openssl version | awk '{print $2}'); kernel $(uname -r); $NCPU cores"
}
