#!/usr/bin/env bash
# serve.sh DIR WORKDIR: serves DIR over HTTP on 127.0.0.1 for a benchmark, with nginx when
# it is installed (apt-get install nginx-light), else python3's http.server, and prints
# "URL PID". The server stops when PID is killed. nginx logs each response's path and
# bytes on the wire (headers included) to WORKDIR/nginx/access.log; with
# BENCH_ACCESS_LOG=FILE every response's byte count is also appended to FILE, one per line.
set -euo pipefail
dir=$(realpath "$1")
work=$2
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
if command -v nginx > /dev/null; then
    mkdir -p "$work/nginx"
    cat > "$work/nginx/nginx.conf" <<CONF
daemon off;
$( [ "$(id -u)" = 0 ] && echo "user root;" )
worker_processes 2;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
    log_format wire '\$request_uri \$bytes_sent';
    access_log $work/nginx/access.log wire;
    log_format sent '\$bytes_sent';
    $( [ -n "${BENCH_ACCESS_LOG:-}" ] && echo "access_log $BENCH_ACCESS_LOG sent;")
    sendfile on;
    keepalive_requests 100000;
    client_body_temp_path $work/nginx;
    proxy_temp_path $work/nginx;
    fastcgi_temp_path $work/nginx;
    uwsgi_temp_path $work/nginx;
    scgi_temp_path $work/nginx;
    server { listen 127.0.0.1:$port; root $dir; }
}
CONF
    nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" > /dev/null 2>&1 &
    pid=$!
else
    python3 -m http.server "$port" --bind 127.0.0.1 --directory "$dir" > /dev/null 2>&1 &
    pid=$!
fi
for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done
echo "http://127.0.0.1:$port $pid"
