#!/usr/bin/env bash
# Checks the examples in this folder for real, on this machine only (loopback):
#   - systemd/forgejo-mcp-broker.service: `systemd-analyze verify`;
#   - nginx/forgejo-mcp-broker.conf: `nginx -t`, then nginx running it with a
#     self-signed certificate for localhost in front of the demo broker;
#   - caddy/Caddyfile: `caddy validate`, then Caddy running it the same way;
# and through each proxy: /healthz, the 401 challenge naming the https public
# URL, the http -> https redirect (nginx), and a whole sign-in with a
# tools/call by the MCP SDK client (test/support/sign-in-once.ts).
# Only the host name, ports and certificate paths of the examples are
# replaced. Installs Debian's nginx-light and caddy when missing; expects
# `npm run build` to have run.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
command -v caddy >/dev/null 2>&1 || missing+=(caddy)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

say() { echo "deploy/check: $*" >&2; }
free_port() { node -e "const s=require('node:net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"; }
# Waits for a line in a file, or fails showing the file (a bound, not a timing assertion).
wait_for() {
  local file="$1" marker="$2"
  for _ in $(seq 1 300); do
    grep -q -- "$marker" "$file" 2>/dev/null && return 0
    sleep 0.1
  done
  say "no \"$marker\" in $file:"; cat "$file" >&2; return 1
}

say "systemd unit"
# Only the binary's path is specific to a host where the broker is installed.
sed "s#/usr/local/bin/forgejo-mcp-broker#$(command -v true)#" deploy/systemd/forgejo-mcp-broker.service >"$work/forgejo-mcp-broker.service"
systemd-analyze verify "$work/forgejo-mcp-broker.service"

openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
  -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1' \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

# The demo broker on a free port (set in broker_port), its public URL the
# proxy's https origin. Not called in a subshell, so its pid is kept for cleanup.
start_broker() {
  local public_url="$1" log
  broker_port="$(free_port)"; log="$work/broker-$broker_port.log"
  node dist/src/cli.js demo --listen "127.0.0.1:$broker_port" --public-url "$public_url" --log-level warn >"$log" 2>&1 &
  pids+=($!)
  wait_for "$log" 'demo is running'
}

# What a client sees through the proxy at https://localhost:<port>.
check_through() {
  local name="$1" origin="$2" challenge me
  curl -fsS --cacert "$work/cert.pem" "$origin/healthz" | grep -q '"ok"'
  challenge="$(curl -sS --cacert "$work/cert.pem" -o /dev/null -w '%{http_code} %header{www-authenticate}' -X POST -H 'Content-Type: application/json' -d '{}' "$origin/mcp")"
  [ "$challenge" = "401 Bearer resource_metadata=\"$origin/.well-known/oauth-protected-resource/mcp\"" ] || { say "$name: challenge was: $challenge"; return 1; }
  me="$(NODE_EXTRA_CA_CERTS="$work/cert.pem" node dist/test/support/sign-in-once.js "$origin/mcp" demo demo)"
  [ "$me" = '{"login":"demo","id":1}' ] || { say "$name: get_me answered: $me"; return 1; }
  say "$name: healthz, 401 challenge, sign-in and tools/call through https ok ($me)"
}

say "nginx"
tls_port="$(free_port)"; http_port="$(free_port)"
start_broker "https://localhost:$tls_port"
sed -e "s#mcp\.example\.org#localhost#g" \
    -e "s#/etc/letsencrypt/live/localhost/fullchain.pem#$work/cert.pem#" \
    -e "s#/etc/letsencrypt/live/localhost/privkey.pem#$work/key.pem#" \
    -e "s#listen 443#listen 127.0.0.1:$tls_port#; s#listen \[::\]:443#listen [::1]:$tls_port#" \
    -e "s#listen 80;#listen 127.0.0.1:$http_port;#; s#listen \[::\]:80;#listen [::1]:$http_port;#" \
    -e "s#https://\$host\$request_uri#https://\$host:$tls_port\$request_uri#" \
    -e "s#server 127.0.0.1:8080#server 127.0.0.1:$broker_port#" \
    deploy/nginx/forgejo-mcp-broker.conf >"$work/site.conf"
mkdir -p "$work/nginx"
cat >"$work/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events {}
http {
  access_log $work/nginx-access.log;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  include $work/site.conf;
}
CONF
nginx -t -p "$work/nginx" -c "$work/nginx.conf"
nginx -p "$work/nginx" -c "$work/nginx.conf" &
pids+=($!)
for _ in $(seq 1 100); do curl -s -o /dev/null --cacert "$work/cert.pem" "https://localhost:$tls_port/healthz" && break; sleep 0.1; done
redirect="$(curl -sS -o /dev/null -w '%{http_code} %{redirect_url}' "http://localhost:$http_port/mcp")"
[ "$redirect" = "301 https://localhost:$tls_port/mcp" ] || { say "nginx: plain http answered: $redirect"; exit 1; }
check_through nginx "https://localhost:$tls_port"

say "caddy"
caddy_port="$(free_port)"
start_broker "https://localhost:$caddy_port"
{
  # Global options for a throwaway run: no admin endpoint, no ACME, state in the temporary directory.
  printf '{\n\tadmin off\n\tauto_https off\n\tstorage file_system %s\n}\n\n' "$work/caddy"
  sed -e "s#^mcp\.example\.org {#https://localhost:$caddy_port {\n\ttls $work/cert.pem $work/key.pem\n\tbind 127.0.0.1#" \
      -e "s#reverse_proxy 127.0.0.1:8080#reverse_proxy 127.0.0.1:$broker_port#" \
      deploy/caddy/Caddyfile
} >"$work/Caddyfile"
export XDG_CONFIG_HOME="$work/caddy" XDG_DATA_HOME="$work/caddy"
caddy validate --adapter caddyfile --config "$work/Caddyfile" 2>"$work/caddy-validate.log" || { cat "$work/caddy-validate.log" >&2; exit 1; }
caddy run --adapter caddyfile --config "$work/Caddyfile" >"$work/caddy.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -s -o /dev/null --cacert "$work/cert.pem" "https://localhost:$caddy_port/healthz" && break; sleep 0.1; done
check_through caddy "https://localhost:$caddy_port"

say "all checks passed"
