# Shared by bench/run and bench/profile: private loopback servers (redis-server,
# nginx, the stand-in, the worker) started on free ports, remembered by pid and
# stopped by bench_cleanup, plus the nginx configurations being compared.
# Sourced, not executed.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
MODULE_SO=${MODULE_SO:-$BUILD/ngx_http_ragq_module.so}
WORKER_BIN=${WORKER_BIN:-$BUILD/ragq-worker}
NGINX=${NGINX:-/usr/sbin/nginx}
NGX_MODDIR=/usr/lib/nginx/modules
# Debian's python3: fast to start (no pyenv shim) and has python3-uvloop.
PY=${PY:-/usr/bin/python3}
export BENCH_DIR

BENCH_PIDS=()

log() { printf '%s bench: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits until something accepts TCP connections on 127.0.0.1:$1.
wait_port() {
    local port=$1 i
    for i in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.05
    done
    log "nothing listens on port $port"
    return 1
}

bench_cleanup() {
    local pid
    for pid in "${BENCH_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${BENCH_PIDS[@]}"; do
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    done
    BENCH_PIDS=()
}

# start_redis DIR: sets REDIS_PORT; the server's pid is remembered.  Not to be
# called inside $(...): a subshell's BENCH_PIDS never reaches bench_cleanup,
# and the server would outlive the run.
start_redis() {
    local dir=$1 port
    port=$(free_port)
    mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$dir" --logfile "$dir/redis.log" --maxclients 10000 \
        --protected-mode yes >/dev/null 2>&1 &
    BENCH_PIDS+=($!)
    echo "$!" >"$dir/redis.pid"
    wait_port "$port" || return 1
    REDIS_PORT=$port
}

redis_cpu_s() { # used_cpu_sys + used_cpu_user, seconds
    redis-cli -p "$1" info cpu | tr -d '\r' |
        awk -F: '/^used_cpu_(sys|user):/ { s += $2 } END { printf "%.6f\n", s }'
}

redis_calls() { # commands executed so far (INFO commandstats; inside MULTI/EXEC each counts)
    redis-cli -p "$1" info commandstats | tr -d '\r' |
        awk -F'[=,]' '/^cmdstat_/ { n += $2 } END { print n + 0 }'
}

# nginx_conf KIND PORT VALKEY_PORT CHAT_BODY STATUS_BODY [WORKERS MASTER]
# KIND is module, lua or ceiling.  Everything but the two locations is the
# same for the three, so the difference measured is the endpoints themselves.
nginx_conf() {
    local kind=$1 port=$2 vport=$3 chat_body=$4 status_body=$5
    local workers=${6:-2} master=${7:-on} nofile
    # Above the hard limit nginx logs an [alert], which the report counts.
    nofile=$(ulimit -Hn)
    [ "$nofile" = unlimited ] || [ "$nofile" -gt 20000 ] && nofile=20000
    local load="" httpconf="" chat="" status=""
    case $kind in
    module)
        load="load_module $MODULE_SO;"
        httpconf="ragq_valkey 127.0.0.1:$vport;
    ${RAGQ_BENCH_HTTP_CONF:-}"
        chat="ragq_enqueue;"
        status="ragq_status;"
        ;;
    lua)
        load="load_module $NGX_MODDIR/ndk_http_module.so;
load_module $NGX_MODDIR/ngx_http_lua_module.so;"
        httpconf="lua_package_path '$BENCH_DIR/lua/?.lua;/usr/share/lua/5.1/?.lua;;';
    lua_package_cpath '/usr/lib/x86_64-linux-gnu/lua/5.1/?.so;;';
    init_by_lua_block {
        require('ragq_bench').configure({ port = $vport })
    }
    init_worker_by_lua_block { require('ragq_bench').init_worker() }"
        chat="content_by_lua_block { require('ragq_bench').chat() }"
        status="content_by_lua_block { require('ragq_bench').status() }"
        ;;
    ceiling)
        chat="return 200 '$chat_body';"
        status="return 200 '$status_body';"
        ;;
    esac
    cat <<EOF
$load
worker_processes $workers;
master_process $master;
daemon off;
pid nginx.pid;
error_log logs/error.log warn;
worker_rlimit_nofile $nofile;
events {
    worker_connections 8192;
}
http {
    access_log off;
    default_type application/json;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    $httpconf
    server {
        listen 127.0.0.1:$port reuseport;
        location = /chat { $chat }
        location = /job-status { $status }
    }
}
EOF
}

# start_nginx DIR PORT (conf already in DIR/nginx.conf) -> master pid in DIR/master.pid
start_nginx() {
    local dir=$1 port=$2
    mkdir -p "$dir/logs" "$dir/tmp"
    if ! "$NGINX" -t -q -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log" \
        2>"$dir/nginx-t.log"; then
        log "nginx -t failed for $dir:"
        cat "$dir/nginx-t.log" >&2
        return 1
    fi
    "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log" \
        >>"$dir/logs/stdout.log" 2>&1 &
    BENCH_PIDS+=($!)
    echo "$!" >"$dir/master.pid"
    wait_port "$port"
}

# Sum of VmRSS (kB) of the nginx workers under master pid $1.
nginx_workers_rss_kb() {
    local pid total=0 rss key
    local kids
    # /proc/.../children is instant; pgrep scans all of /proc (slow under load).
    kids=$(cat "/proc/$1/task/$1/children" 2>/dev/null) || kids=$(pgrep -P "$1")
    for pid in $kids; do
        while read -r key rss _; do
            [ "$key" = VmRSS: ] && total=$((total + rss))
        done <"/proc/$pid/status" 2>/dev/null || true
    done
    echo "$total"
}

# CPU time (ns, schedstat) of the nginx workers under master pid $1.  A worker
# that was replaced (crash) restarts from 0, which shows as a bad run.
nginx_workers_cpu_ns() {
    local pid total=0 ns kids
    kids=$(cat "/proc/$1/task/$1/children" 2>/dev/null) || kids=$(pgrep -P "$1")
    for pid in $kids; do
        read -r ns _ <"/proc/$pid/schedstat" 2>/dev/null || ns=0
        total=$((total + ns))
    done
    echo "$total"
}

# utime + stime of a process, in clock ticks.
proc_cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# Other people rebuild build/ while benchmarks run; a .so rewritten under a
# running nginx crashes it.  Load private copies instead.
snapshot_binaries() {
    local dir=$1
    mkdir -p "$dir"
    if [ -f "$MODULE_SO" ]; then
        cp "$MODULE_SO" "$dir/ngx_http_ragq_module.so"
        MODULE_SO=$dir/ngx_http_ragq_module.so
    fi
    if [ -x "$WORKER_BIN" ]; then
        cp "$WORKER_BIN" "$dir/ragq-worker"
        WORKER_BIN=$dir/ragq-worker
    fi
}

# CPU (ms) of this shell's reaped children, from the output of the `times`
# builtin saved in file $1.  Take the snapshots with `times >FILE` in the
# running shell itself (a $(...) subshell starts from zero).
times_children_ms() {
    local u s
    { read -r _; read -r u s; } <"$1"
    awk -v u="${u%s}" -v s="${s%s}" 'function ms(x, m) { split(x, m, "m"); return (m[1] * 60 + m[2]) * 1000 }
        BEGIN { printf "%d\n", ms(u) + ms(s) }'
}

# ---- the seed stack (bench/seed/): FastAPI + RQ under uvicorn -------------------------------

# Whether Debian's python3 can run the seed stack (python3-fastapi, -uvicorn, -rq, -redis).
seed_available() {
    "$PY" -c 'import fastapi, uvicorn, rq, redis' 2>/dev/null
}

# start_seed DIR PORT VALKEY_PORT: uvicorn with 2 workers (uvloop + httptools when installed,
# access log off as in the nginx configurations) -> supervisor pid in DIR/master.pid.
start_seed() {
    local dir=$1 port=$2 vport=$3 loop=auto http=auto
    mkdir -p "$dir/logs"
    "$PY" -c 'import uvloop' 2>/dev/null && loop=uvloop
    "$PY" -c 'import httptools' 2>/dev/null && http=httptools
    (cd "$BENCH_DIR/seed" &&
        exec env REDIS_URL="redis://127.0.0.1:$vport/0" "$PY" -m uvicorn --app-dir . app:app \
            --workers 2 --loop "$loop" --http "$http" --no-access-log --log-level warning \
            --host 127.0.0.1 --port "$port") >>"$dir/logs/error.log" 2>&1 &
    BENCH_PIDS+=($!)
    echo "$!" >"$dir/master.pid"
    echo "loop=$loop http=$http" >"$dir/uvicorn.txt"
    wait_port "$port" || return 1
    # Both workers answer before the first measured run (each imports the app itself).
    local i
    for i in $(seq 1 100); do
        [ "$(wc -w <"/proc/$!/task/$!/children" 2>/dev/null || echo 0)" -ge 2 ] && break
        sleep 0.05
    done
    sleep 1
}

# Every process under pid $1, $1 included (uvicorn: supervisor, workers, resource tracker).
proc_tree() {
    local pid=$1 kid
    echo "$pid"
    for kid in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
        proc_tree "$kid"
    done
}

# CPU time (ns, schedstat, every thread) of the process tree under pid $1.
proc_tree_cpu_ns() {
    local pid f ns total=0
    for pid in $(proc_tree "$1"); do
        for f in /proc/"$pid"/task/*/schedstat; do
            read -r ns _ <"$f" 2>/dev/null || ns=0
            total=$((total + ns))
        done
    done
    echo "$total"
}

# Sum of VmRSS (kB) of the children of pid $1 (uvicorn's workers; the supervisor is idle).
proc_children_rss_kb() {
    local pid total=0 key rss
    for pid in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
        while read -r key rss _; do
            [ "$key" = VmRSS: ] && total=$((total + rss))
        done <"/proc/$pid/status" 2>/dev/null || true
    done
    echo "$total"
}
