#!/usr/bin/env bash
# Benchmark actor-socks against the no-proxy baseline ("direct") and,
# optionally, Dante and microsocks, with examples/loadgen.rs.
#
#   scripts/bench.sh                 # direct + actor-socks
#   scripts/bench.sh --all           # + Dante + microsocks (apt-get installs them)
#   scripts/bench.sh --all --runs 5 --bulk-bytes 4G
#
# Every route gets: bulk up/down with 1 and N streams, connrate, idle; each
# test is run --runs times and the median reported. Prints one markdown table
# (each figure with its ratio to direct) and keeps the raw JSON lines in
# $OUT/results.jsonl. Everything this script starts is killed on exit.
# Loopback only. See docs/performance.md.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: scripts/bench.sh [options]
  --with-dante            also benchmark Dante (apt-get install dante-server)
  --with-microsocks       also benchmark microsocks (apt-get install microsocks)
  --all                   both of the above, and --uml-idle
  --uml-idle              also hold 10,000 idle connections through actor-socks inside a
                          User-Mode Linux guest (scripts/uml-idle.sh), where the open-files
                          limit can be lifted; needs user-mode-linux (apt-get installs it)
  --no-actor-socks        skip actor-socks
  --no-build              do not run cargo build (use existing target/release)
  --runs N                runs per test, median reported (default 3)
  --bulk-bytes SIZE       bytes for the single-stream bulk runs (default 8G)
  --streams N             streams in the multi-stream bulk runs (default 8)
  --bulk-bytes-multi SIZE bytes per stream in the multi-stream runs (default 1G)
  --connrate-workers W    connrate workers (default 8)
  --connrate-workers-high W
                          a second connrate run with W workers, to see how each server
                          copes with more concurrent clients (default 64; 0 skips it)
  --connrate-secs S       connrate duration (default 5)
  --idle-conns C          idle connections (default 10000, clamped to the fd limit)
  --idle-conns-dante C    idle connections for Dante (default 2000: ~0.4 MB each)
  --idle-hold S           seconds to hold idle connections (default 3)
  --out DIR               keep logs and results.jsonl here (default: a temp dir)
  -h, --help
SIZE takes K/M/G (10^3, 10^6, 10^9) or Ki/Mi/Gi suffixes.
EOF
}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=3
BULK_BYTES=8G
STREAMS=8
BULK_BYTES_MULTI=1G
CR_WORKERS=8
CR_WORKERS_HIGH=64
CR_SECS=5
IDLE_CONNS=10000
IDLE_CONNS_DANTE=2000
IDLE_HOLD=3
WITH_DANTE=0
WITH_MICROSOCKS=0
WITH_ACTOR=1
WITH_UML_IDLE=0
BUILD=1
OUT=""

while [ $# -gt 0 ]; do
    case "$1" in
        --with-dante) WITH_DANTE=1 ;;
        --with-microsocks) WITH_MICROSOCKS=1 ;;
        --all) WITH_DANTE=1; WITH_MICROSOCKS=1; WITH_UML_IDLE=1 ;;
        --uml-idle) WITH_UML_IDLE=1 ;;
        --no-actor-socks) WITH_ACTOR=0 ;;
        --no-build) BUILD=0 ;;
        --runs) RUNS=$2; shift ;;
        --bulk-bytes) BULK_BYTES=$2; shift ;;
        --streams) STREAMS=$2; shift ;;
        --bulk-bytes-multi) BULK_BYTES_MULTI=$2; shift ;;
        --connrate-workers) CR_WORKERS=$2; shift ;;
        --connrate-workers-high) CR_WORKERS_HIGH=$2; shift ;;
        --connrate-secs) CR_SECS=$2; shift ;;
        --idle-conns) IDLE_CONNS=$2; shift ;;
        --idle-conns-dante) IDLE_CONNS_DANTE=$2; shift ;;
        --idle-hold) IDLE_HOLD=$2; shift ;;
        --out) OUT=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "bench.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

command -v python3 >/dev/null || { echo "bench.sh: needs python3 (ports, table)" >&2; exit 2; }

if [ -z "$OUT" ]; then
    OUT=$(mktemp -d /tmp/actor-socks-bench.XXXXXX)
fi
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
LOADGEN=$ROOT/target/release/examples/loadgen
ACTOR=$ROOT/target/release/actor-socks

log() { echo "bench: $*" >&2; }

# ---- cleanup: kill what we started (and, for forking servers, their children)
STARTED=()
descendants() {
    local c
    for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        descendants "$c"
        echo "$c"
    done
}
stop_pid() {
    # SIGTERM the server itself (Dante's main process then ends its own
    # children), give it 5 s, then SIGKILL it and whatever child is left.
    local pid=$1 kids k
    kids=$(descendants "$pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for k in $kids; do
        if [ -d "/proc/$k" ] && ! grep -q '^State:.*Z' "/proc/$k/status" 2>/dev/null; then
            kill -9 "$k" 2>/dev/null || true
        fi
    done
}
cleanup() {
    local pid
    for pid in "${STARTED[@]}"; do stop_pid "$pid"; done
    STARTED=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- limits: every process we start inherits soft = hard open-files limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
# The loadgen holds both ends of each idle connection (client + in-process
# target) and a proxy holds two fds per connection, so C must fit twice.
MAX_IDLE=$(( (NOFILE - 256) / 2 ))
clamp_idle() {
    if [ "$1" -gt "$MAX_IDLE" ]; then
        log "idle: $1 connections need ~$(( 2 * $1 + 256 )) fds per process; open-files limit is $NOFILE, using $MAX_IDLE"
        echo "$MAX_IDLE"
    else
        echo "$1"
    fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # host port timeout-secs
    python3 - "$1" "$2" "$3" <<'EOF'
import socket, sys, time
host, port, t = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
end = time.time() + t
while time.time() < end:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(1)
EOF
}

# ---- build
if [ "$BUILD" = 1 ]; then
    log "building release (bins + examples)"
    (cd "$ROOT" && cargo build --release --bins --examples) >&2
fi
[ -x "$LOADGEN" ] || { echo "bench.sh: $LOADGEN missing (build failed?)" >&2; exit 2; }

# ---- routes: parallel arrays of name, proxy address, server pid, idle conns
R_NAME=(direct)
R_ADDR=(direct)
R_PID=("")
R_IDLE=("$(clamp_idle "$IDLE_CONNS")")
FAILED_ROUTES=()

start_actor() {
    local ready=$OUT/actor-socks.ready pid addr
    if [ ! -x "$ACTOR" ]; then
        log "actor-socks: $ACTOR not found; skipping"
        S_WHY="binary $ACTOR missing"
        return 1
    fi
    rm -f "$ready"
    "$ACTOR" --bind 127.0.0.1:0 --ready-file "$ready" --max-clients 20000 --log-level warn \
        >>"$OUT/actor-socks.log" 2>&1 &
    pid=$!
    STARTED+=("$pid")
    addr=""
    for _ in $(seq 100); do
        if [ -s "$ready" ]; then
            addr=$(awk '$1 == "socks" { print $2; exit }' "$ready")
            [ -n "$addr" ] && break
        fi
        if ! kill -0 "$pid" 2>/dev/null; then break; fi
        sleep 0.1
    done
    if [ -z "$addr" ]; then
        local why="no 'socks ADDR' line in --ready-file within 10 s"
        if ! kill -0 "$pid" 2>/dev/null; then
            local rc=0
            wait "$pid" || rc=$?
            why="exited (status $rc) before writing its ready file"
        fi
        log "actor-socks FAILED TO START: $why; log tail:"
        tail -n 20 "$OUT/actor-socks.log" | sed 's/^/    /' >&2
        S_WHY=$why
        return 1
    fi
    S_ADDR=$addr; S_PID=$pid
}

ensure_pkg() { # binary package
    command -v "$1" >/dev/null && return 0
    log "installing $2 with apt-get"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2"; } >&2
}

start_dante() {
    ensure_pkg danted dante-server
    local port conf=$OUT/sockd.conf pid
    port=$(free_port)
    cat >"$conf" <<EOF
logoutput: $OUT/dante.log
errorlog: $OUT/dante.err
internal: 127.0.0.1 port = $port
external: 127.0.0.1
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: nobody
client pass {
        from: 127.0.0.0/8 to: 0.0.0.0/0
}
socks pass {
        from: 127.0.0.0/8 to: 127.0.0.0/8
        command: connect
}
EOF
    # Foreground (no -D), so $! is the main sockd process.
    danted -f "$conf" -p "$OUT/dante.pid" >"$OUT/dante.stdout" 2>&1 &
    pid=$!
    STARTED+=("$pid")
    if ! wait_port 127.0.0.1 "$port" 10; then
        log "dante FAILED TO START; see $OUT/dante.err"
        S_WHY="did not listen"
        return 1
    fi
    S_ADDR=127.0.0.1:$port; S_PID=$pid
}

start_microsocks() {
    ensure_pkg microsocks microsocks
    local port pid
    port=$(free_port)
    microsocks -i 127.0.0.1 -p "$port" >>"$OUT/microsocks.log" 2>&1 &
    pid=$!
    STARTED+=("$pid")
    if ! wait_port 127.0.0.1 "$port" 10; then
        log "microsocks FAILED TO START; see $OUT/microsocks.log"
        S_WHY="did not listen"
        return 1
    fi
    S_ADDR=127.0.0.1:$port; S_PID=$pid
}

# start_server NAME: sets S_ADDR and S_PID, or S_WHY and returns 1.
start_server() {
    S_ADDR=""; S_PID=""; S_WHY=""
    case "$1" in
        actor-socks) start_actor ;;
        dante) start_dante ;;
        microsocks) start_microsocks ;;
    esac || return 1
    log "$1 pid $S_PID on $S_ADDR"
}

# Memory per idle connection is measured on a freshly started server: a
# server that already served the bulk and connrate runs (or an earlier idle
# run) keeps grown heaps and, for Dante, forked children, which would hide
# most of the cost. So before each idle run the server is restarted.
restart_server() { # route-index
    local i=$1 pid=${R_PID[$1]} keep=() p
    stop_pid "$pid"
    for p in "${STARTED[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
    STARTED=("${keep[@]}")
    if start_server "${R_NAME[$i]}"; then
        R_ADDR[$i]=$S_ADDR; R_PID[$i]=$S_PID
    else
        return 1
    fi
}

add_route() { # name idle-conns
    if start_server "$1"; then
        R_NAME+=("$1"); R_ADDR+=("$S_ADDR"); R_PID+=("$S_PID"); R_IDLE+=("$(clamp_idle "$2")")
    else
        FAILED_ROUTES+=("$1 ($S_WHY)")
    fi
}

[ "$WITH_ACTOR" = 1 ] && add_route actor-socks "$IDLE_CONNS"
[ "$WITH_DANTE" = 1 ] && add_route dante "$IDLE_CONNS_DANTE"
[ "$WITH_MICROSOCKS" = 1 ] && add_route microsocks "$IDLE_CONNS"

# ---- run
# CPU time (clock ticks) of a server: the process, its live descendants, and
# the children it has reaped (Dante forks; microsocks' threads are in the
# process's own figures). Steadier than throughput on a shared machine.
cpu_ticks() { # pid
    local p t=0 v
    for p in "$1" $(descendants "$1"); do
        # Fields after "(comm) ": state is 1st, utime 12th ... cstime 15th.
        v=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 + $14 + $15 }')
        t=$((t + ${v:-0}))
    done
    echo "$t"
}
CLK_TCK=$(getconf CLK_TCK)

run_one() { # test-name route-index run loadgen-args...
    local test=$1 i=$2 run=$3 line rc=0 pid=${R_PID[$2]} c0="" cpu=null
    shift 3
    [ -n "$pid" ] && c0=$(cpu_ticks "$pid")
    line=$("$LOADGEN" "$@" --proxy "${R_ADDR[$i]}" --label "${R_NAME[$i]}" --json 2>>"$OUT/loadgen.err") || rc=$?
    if [ -n "$c0" ]; then
        cpu=$(awk -v a="$c0" -v b="$(cpu_ticks "$pid")" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) / hz }')
    fi
    if [ -z "$line" ]; then
        line='{}'
    fi
    printf '{"test":"%s","route":"%s","run":%d,"rc":%d,"server_cpu_s":%s,"result":%s}\n' \
        "$test" "${R_NAME[$i]}" "$run" "$rc" "$cpu" "$line" >>"$RESULTS"
    log "$(printf '%-11s %-12s run %d rc %d %s' "${R_NAME[$i]}" "$test" "$run" "$rc" "$line" | cut -c1-200)"
}

# Runs are interleaved (run 1 of every route, then run 2 ...), so drift on a
# shared machine and TIME_WAIT left by one route's connection-rate run fall
# on every route alike instead of on whichever comes last.
for run in $(seq "$RUNS"); do
    for i in "${!R_NAME[@]}"; do
        run_one bulk-up-1 "$i" "$run" bulk --conns 1 --bytes "$BULK_BYTES" --dir up
        run_one bulk-up-n "$i" "$run" bulk --conns "$STREAMS" --bytes "$BULK_BYTES_MULTI" --dir up
        run_one bulk-down-1 "$i" "$run" bulk --conns 1 --bytes "$BULK_BYTES" --dir down
        run_one bulk-down-n "$i" "$run" bulk --conns "$STREAMS" --bytes "$BULK_BYTES_MULTI" --dir down
        run_one connrate "$i" "$run" connrate --workers "$CR_WORKERS" --duration "$CR_SECS"
        if [ "$CR_WORKERS_HIGH" -gt 0 ]; then
            run_one connrate-high "$i" "$run" connrate --workers "$CR_WORKERS_HIGH" --duration "$CR_SECS"
        fi
        pidarg=()
        if [ -n "${R_PID[$i]}" ]; then
            if ! restart_server "$i"; then
                log "${R_NAME[$i]}: restart before idle failed ($S_WHY)"
                printf '{"test":"idle","route":"%s","run":%d,"rc":3,"result":{}}\n' "${R_NAME[$i]}" "$run" >>"$RESULTS"
                continue
            fi
            sleep 0.5 # let it settle before the RSS baseline
            pidarg=(--pid "${R_PID[$i]}")
        fi
        run_one idle "$i" "$run" idle --conns "${R_IDLE[$i]}" --hold "$IDLE_HOLD" "${pidarg[@]}"
    done
done

# ---- table
{
    echo "# nproc $(nproc); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); kernel $(uname -r)"
    echo "# runs $RUNS (median); bulk 1 x $BULK_BYTES and $STREAMS x $BULK_BYTES_MULTI; connrate $CR_WORKERS (and $CR_WORKERS_HIGH) workers x ${CR_SECS}s; idle hold ${IDLE_HOLD}s"
} >"$OUT/table.md"
python3 - "$RESULTS" "$STREAMS" "$CR_WORKERS" "$CR_WORKERS_HIGH" >>"$OUT/table.md" <<'EOF'
import json, statistics, sys
path, streams, crw, crw_high = sys.argv[1:5]
rows = [json.loads(l) for l in open(path) if l.strip()]
# Derived: server CPU per unit of work (the server's CPU over the run,
# from /proc; none for direct).
for r in rows:
    cpu, res = r.get("server_cpu_s"), r["result"]
    if not isinstance(cpu, (int, float)):
        continue
    if res.get("received_bytes"):
        res["cpu_ms_per_gb"] = cpu * 1000 / (res["received_bytes"] / 1e9)
    if res.get("conns_ok"):
        res["cpu_us_per_conn"] = cpu * 1e6 / res["conns_ok"]
routes = []
for r in rows:
    if r["route"] not in routes:
        routes.append(r["route"])

def runs(test, route):
    return [r for r in rows if r["test"] == test and r["route"] == route]

def median(test, route, key, ok=lambda r: r["rc"] == 0):
    vals = [r["result"].get(key) for r in runs(test, route) if ok(r)]
    vals = [v for v in vals if isinstance(v, (int, float))]
    return statistics.median(vals) if vals else None

def failures(test, route):
    return sum(1 for r in runs(test, route) if r["rc"] != 0)

# (label, test, key, format, ratio-to-direct?)
metrics = [
    ("bulk up, 1 stream (MB/s)", "bulk-up-1", "mbps", "{:.0f}", True),
    (f"bulk up, {streams} streams (MB/s)", "bulk-up-n", "mbps", "{:.0f}", True),
    ("bulk down, 1 stream (MB/s)", "bulk-down-1", "mbps", "{:.0f}", True),
    (f"bulk down, {streams} streams (MB/s)", "bulk-down-n", "mbps", "{:.0f}", True),
    (f"connrate, {crw} workers (conn/s)", "connrate", "conns_per_sec", "{:.0f}", True),
    ("connrate p50 (ms)", "connrate", "p50_ms", "{:.3f}", True),
    ("connrate p99 (ms)", "connrate", "p99_ms", "{:.3f}", True),
    ("connrate errors (median/run)", "connrate", "errors", "{:.0f}", False),
    (f"connrate, {crw_high} workers (conn/s)", "connrate-high", "conns_per_sec", "{:.0f}", True),
    (f"connrate, {crw_high} workers, p99 (ms)", "connrate-high", "p99_ms", "{:.3f}", True),
    (f"connrate, {crw_high} workers, errors (median/run)", "connrate-high", "errors", "{:.0f}", False),
    ("server CPU per GB, 1 stream up (ms)", "bulk-up-1", "cpu_ms_per_gb", "{:.0f}", False),
    (f"server CPU per GB, {streams} streams up (ms)", "bulk-up-n", "cpu_ms_per_gb", "{:.0f}", False),
    ("server CPU per GB, 1 stream down (ms)", "bulk-down-1", "cpu_ms_per_gb", "{:.0f}", False),
    (f"server CPU per GB, {streams} streams down (ms)", "bulk-down-n", "cpu_ms_per_gb", "{:.0f}", False),
    (f"server CPU per connection, {crw} workers (us)", "connrate", "cpu_us_per_conn", "{:.1f}", False),
    (f"server CPU per connection, {crw_high} workers (us)", "connrate-high", "cpu_us_per_conn", "{:.1f}", False),
    ("idle: connections ok / asked", "idle", None, None, False),
    ("idle: proxy RSS per conn (KB)", "idle", "kb_per_conn", "{:.1f}", False),
]
print()
print("| test | " + " | ".join(routes) + " |")
print("|---|" + "---|" * len(routes))
for label, test, key, fmt, ratio in metrics:
    if not any(r["test"] == test for r in rows):
        continue  # not run (e.g. --connrate-workers-high 0)
    cells = []
    for route in routes:
        if key is None:  # idle ok/asked
            ok = median(test, route, "conns_ok", ok=lambda r: True)
            asked = median(test, route, "conns", ok=lambda r: True)
            cells.append("-" if ok is None else f"{ok:.0f} / {asked:.0f}")
            continue
        # connrate and idle still report on rc 1 (some errors); bulk rc 1 = bytes short.
        accept = (lambda r: r["rc"] == 0) if test.startswith("bulk") else (lambda r: r["rc"] in (0, 1))
        v = median(test, route, key, ok=accept)
        if v is None:
            done = [r for r in runs(test, route) if accept(r)]
            cells.append("-" if done or not runs(test, route) else "FAIL")
            continue
        cell = fmt.format(v)
        d = median(test, "direct", key, ok=accept)
        if ratio and route != "direct" and d:
            cell += f" ({v / d:.2f}x)"
        f = failures(test, route)
        if f:
            cell += f" [{f} failed run(s)]"
        cells.append(cell)
    print(f"| {label} | " + " | ".join(cells) + " |")
EOF

status=0
# ---- 10,000 idle connections where the fd limit can be lifted (a UML guest)
if [ "$WITH_ACTOR" = 1 ] && [ "$WITH_UML_IDLE" = 1 ]; then
    command -v linux.uml >/dev/null || { apt-get install -y user-mode-linux kmod >/dev/null 2>&1 || true; }
    log "idle in a User-Mode Linux guest: $IDLE_CONNS connections (scripts/uml-idle.sh)"
    if "$ROOT/scripts/uml-idle.sh" --no-build --conns "$IDLE_CONNS" --hold "$IDLE_HOLD" \
            >"$OUT/uml-idle.log" 2>&1; then
        {
            echo
            echo "idle in a UML guest (open-files limit 65536; scripts/uml-idle.sh):"
            grep -E '^idle via' "$OUT/uml-idle.log" | sed 's/^/    /'
        } >>"$OUT/table.md"
    else
        log "uml-idle failed; see $OUT/uml-idle.log"
        tail -n 20 "$OUT/uml-idle.log" >&2
        FAILED_ROUTES+=("actor-socks idle in a UML guest (scripts/uml-idle.sh)")
    fi
fi

echo
cat "$OUT/table.md"
echo
echo "raw results: $RESULTS"
if [ ${#FAILED_ROUTES[@]} -gt 0 ]; then
    for f in "${FAILED_ROUTES[@]}"; do echo "NOT MEASURED: $f"; done
    status=1
fi
exit $status
