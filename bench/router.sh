#!/usr/bin/env bash
# bench/router.sh — how sluice's router compares with nginx split_clients.
#
# Builds a tiny Go backend (bench/backend) and sluice, then measures, with
# wrk, the same requests served (1) directly by a backend, (2) through
# nginx `split_clients` 90/10 over two backends with upstream keep-alive,
# (3) through `sluice serve` with the same 90/10 split set with the CLI
# (`sluice deploy` twice, `sluice traffic hello hello-001=90 hello-002=10`)
# and the same query rule (`sluice route hello hello-002 'env=beta*'`; in
# nginx a map on $arg_env). Workloads (WORKLOADS, all by default):
#   get64     64-byte GET responses, 64 connections
#   post1k    1 KB POST bodies, 32 connections
#   post16k   16 KB POST bodies, 32 connections
#   big1m     1 MiB GET responses, 16 connections, loaded by bench/bigclient
#             (wrk reads 8 KiB at a time, and 1 MiB responses made wrk's own
#             core the limit; bigclient reads 64 KiB at a time, see
#             bench/README.md; BIG_CLIENT=wrk uses wrk as before)
#   conns1000 64-byte GET responses, 1,000 connections
#   rule      64-byte GET responses the query rule routes, 64 connections
# Servers (proxy and backends) are pinned to one core and wrk to another
# when there are at least two. Repetitions are interleaved; the tables give
# medians: requests per second, p50/p99 latency, CPU µs per request of the
# proxy process (utime+stime from /proc/<pid>/stat) and of the backends,
# with ratios to direct and to nginx, and how busy the servers' core and
# wrk's core were (a row whose wrk core is near 100% measures the client
# more than the proxy); then sluice / nginx per workload from the
# round-by-round ratios.
#
# Usage: bench/router.sh            (from anywhere in the repository)
# Knobs (environment): REPS=5 DURATION=10s WARMUP=3s
#   WORKLOADS="get64 post1k post16k big1m conns1000 rule"
#   TARGETS="direct nginx sluice"  SERVER_CPUS=0 LOAD_CPUS=1 PORT_BASE=18000
#   SLUICE_BIN=path  use this sluice binary instead of building ./cmd/sluice
#   SLUICE_BIN_B=path  also measure this second sluice build, as target
#     "sluiceb", in the same rounds (an A/B of a change; rows "<workload>b")
# Installs wrk and nginx with apt-get when they are missing (needs root).
set -euo pipefail

REPS=${REPS:-5}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-3s}
WORKLOADS=${WORKLOADS:-get64 post1k post16k big1m conns1000 rule}
read -r -a TARGETS <<<"${TARGETS:-direct nginx sluice}"
PORT_BASE=${PORT_BASE:-18000}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench.XXXXXX")
# Run as root, sluice runs builds and instances as another user, which must
# reach the data directory and the backend binary inside $WORK.
chmod 0755 "$WORK"
PIDS=()
NGINX_PID=""

log() { printf '%s\n' "$*" >&2; }
die() { log "router.sh: $*"; exit 1; }

cleanup() {
	set +e
	if [[ -n $NGINX_PID ]]; then kill -QUIT "$NGINX_PID" 2>/dev/null; fi
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
	if [[ -n $NGINX_PID ]]; then wait "$NGINX_PID" 2>/dev/null; fi
	rm -rf "$WORK"
}
trap cleanup EXIT

# --- tools -------------------------------------------------------------------

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need+=(nginx)
command -v curl >/dev/null || need+=(curl)
if ((${#need[@]})); then
	log "installing ${need[*]} with apt-get"
	SUDO=""
	[[ $(id -u) == 0 ]] || SUDO=sudo
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
command -v go >/dev/null || die "go is needed to build the backend and sluice"

# 1,000 connections through a proxy need more than 1,024 descriptors.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

CLK_TCK=$(getconf CLK_TCK)
NCPU=$(nproc)
if ((NCPU >= 2)); then
	SERVER_CPUS=${SERVER_CPUS:-0}
	LOAD_CPUS=${LOAD_CPUS:-1}
	# Arrays, not functions: "${ON_SERVER[@]}" cmd & leaves $! the server's pid.
	ON_SERVER=(taskset -c "$SERVER_CPUS")
	ON_LOAD=(taskset -c "$LOAD_CPUS")
else
	log "one CPU: servers and wrk share it (figures are not comparable with pinned runs)"
	SERVER_CPUS="" LOAD_CPUS=""
	ON_SERVER=(env)
	ON_LOAD=(env)
fi

# --- build -------------------------------------------------------------------

mkdir -p "$WORK/bin"
log "building the backend and sluice"
(cd "$ROOT" && go build -o "$WORK/bin/backend" ./bench/backend)
(cd "$ROOT" && go build -o "$WORK/bin/bigclient" ./bench/bigclient)
if [[ -n ${SLUICE_BIN:-} ]]; then
	cp "$SLUICE_BIN" "$WORK/bin/sluice"
else
	(cd "$ROOT" && go build -o "$WORK/bin/sluice" ./cmd/sluice)
fi

# --- helpers -------------------------------------------------------------------

wait_http() { # url [host]
	local url=$1 host=${2:-}
	for _ in $(seq 200); do
		if curl -fs -o /dev/null ${host:+-H "Host: $host"} "$url"; then return 0; fi
		sleep 0.05
	done
	die "$url did not answer"
}

# cpu_ticks pid... prints the sum of utime+stime of the processes.
cpu_ticks() {
	local sum=0 p f
	for p in "$@"; do
		[[ -r /proc/$p/stat ]] || continue
		f=$(<"/proc/$p/stat")
		f=${f##*) } # fields after the command name, from field 3 (state)
		read -r -a a <<<"$f"
		sum=$((sum + a[11] + a[12])) # fields 14 and 15
	done
	echo "$sum"
}

# core_ticks cpu: busy and total ticks so far of that CPU, from /proc/stat
# ("- -" unless it names one CPU).
core_ticks() {
	[[ ${1:-} =~ ^[0-9]+$ ]] || { echo "- -"; return 0; }
	awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}

# to_ms converts a wrk duration (850.00us, 1.20ms, 1.01s, 2.00m) to ms.
to_ms() {
	awk -v d="$1" 'BEGIN {
		n = d + 0; u = d; sub(/^[0-9.]+/, "", u)
		if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
		printf "%.3f", n }'
}

# --- servers -------------------------------------------------------------------

P_V1=$((PORT_BASE + 1))
P_V2=$((PORT_BASE + 2))
P_NGINX=$((PORT_BASE + 10))
P_API=$((PORT_BASE + 20))
P_ROUTER=$((PORT_BASE + 21))
HOST=hello.bench.test

log "starting backends on :$P_V1 and :$P_V2"
"${ON_SERVER[@]}" "$WORK/bin/backend" -addr "127.0.0.1:$P_V1" -name v1 &
PIDS+=($!)
BACKEND_PIDS=($!)
"${ON_SERVER[@]}" "$WORK/bin/backend" -addr "127.0.0.1:$P_V2" -name v2 &
PIDS+=($!)
BACKEND_PIDS+=($!)
wait_http "http://127.0.0.1:$P_V1/"
wait_http "http://127.0.0.1:$P_V2/"

log "starting nginx on :$P_NGINX"
mkdir -p "$WORK/nginx/logs"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
worker_rlimit_nofile 65536;
events { worker_connections 8192; }
http {
	access_log off;
	split_clients "\${request_id}" \$version {
		90% v1;
		*   v2;
	}
	# The same query rule sluice serves: env=beta* goes to v2.
	map \$arg_env \$target {
		~^beta  v2;
		default \$version;
	}
	upstream v1 { server 127.0.0.1:$P_V1; keepalive 128; }
	upstream v2 { server 127.0.0.1:$P_V2; keepalive 128; }
	# Sized so that a 1 MiB response stays in memory.
	proxy_buffer_size 16k;
	proxy_buffers 64 16k;
	proxy_busy_buffers_size 256k;
	server {
		listen 127.0.0.1:$P_NGINX backlog=4096;
		client_max_body_size 64m;
		client_body_buffer_size 64k;
		location / {
			proxy_pass http://\$target;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header Host \$http_host;
			# The same fields sluice sets, so both send the backends the same work.
			proxy_set_header X-Forwarded-For \$remote_addr;
			proxy_set_header X-Forwarded-Host \$http_host;
			proxy_set_header X-Forwarded-Proto \$scheme;
			proxy_set_header Forwarded "for=\$remote_addr;proto=\$scheme;host=\\"\$http_host\\"";
			proxy_set_header X-Request-Id \$request_id;
		}
	}
}
EOF
# glibc's heap trimming off: otherwise the worker hands its 1 MiB of proxy
# buffers back to the kernel after a large response and faults them in again
# for the next one. On a VM where page faults are dear this made nginx's
# big1m figures swing fivefold between runs (perf: a third of the worker's
# time in page faults; 2,000-2,900 µs of CPU per request instead of ~500).
# sluice reuses its buffers, so this keeps the comparison about proxying.
MALLOC_TRIM_THRESHOLD_=268435456 MALLOC_TOP_PAD_=67108864 \
	"${ON_SERVER[@]}" "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
NGINX_PID=$!
wait_http "http://127.0.0.1:$P_NGINX/" "$HOST"
NGINX_PIDS=("$NGINX_PID" $(pgrep -P "$NGINX_PID"))

declare -A URL PROXY BACKENDS

# start_sluice target binary api-port router-port: runs `sluice serve` with
# a data directory of its own, deploys the two versions (their backend is a
# copy of the backend binary named after the target, so that its processes
# can be told apart), sets the split and the rule, and fills in the
# target's URL, PROXY and BACKENDS.
start_sluice() {
	local t=$1 bin=$2 api=$3 router=$4 pid p
	local be="$WORK/bin/backend-$t"
	log "starting $t serve on :$router and deploying two versions"
	cp "$WORK/bin/backend" "$be"
	mkdir -p "$WORK/$t/app" "$WORK/$t/data"
	printf 'services:\n  hello:\n    run: exec %s\n    health: /\n    instances: 1\n' "$be" >"$WORK/$t/app/sluice.yaml"
	"${ON_SERVER[@]}" "$bin" serve --data "$WORK/$t/data" \
		--listen "127.0.0.1:$api" --router-listen "127.0.0.1:$router" \
		--base-domain bench.test --log-level warn 2>"$WORK/$t/sluice.log" &
	pid=$!
	PIDS+=($pid)
	wait_http "http://127.0.0.1:$api/healthz"
	local cli=(env SLUICE_SERVER="http://127.0.0.1:$api" "$bin")
	"${cli[@]}" deploy hello --source "$WORK/$t/app" --wait >/dev/null
	"${cli[@]}" deploy hello --source "$WORK/$t/app" --strategy canary --wait >/dev/null
	"${cli[@]}" traffic hello hello-001=90 hello-002=10 >/dev/null
	"${cli[@]}" route hello hello-002 'env=beta*' >/dev/null
	wait_http "http://127.0.0.1:$router/" "$HOST"
	# The backends themselves, not the wrappers sluice may start them under
	# (those name the binary in their arguments too).
	local pids=()
	for p in $(pgrep -f "$be"); do
		[[ $(readlink "/proc/$p/exe" 2>/dev/null) == "$be" ]] && pids+=("$p")
	done
	((${#pids[@]} == 2)) || die "want 2 backends of $t, found ${#pids[@]}"
	URL[$t]="http://127.0.0.1:$router"
	PROXY[$t]=$pid
	BACKENDS[$t]="${pids[*]}"
}

start_sluice sluice "$WORK/bin/sluice" "$P_API" "$P_ROUTER"
if [[ -n ${SLUICE_BIN_B:-} ]]; then
	# A second build, measured in the same rounds (an A/B of a change).
	cp "$SLUICE_BIN_B" "$WORK/bin/sluice-b"
	start_sluice sluiceb "$WORK/bin/sluice-b" $((PORT_BASE + 30)) $((PORT_BASE + 31))
	[[ " ${TARGETS[*]} " == *" sluiceb "* ]] || TARGETS+=(sluiceb)
fi

# --- runs ----------------------------------------------------------------------

URL[direct]="http://127.0.0.1:$P_V1"
URL[nginx]="http://127.0.0.1:$P_NGINX"
PROXY[direct]=""
PROXY[nginx]="${NGINX_PIDS[*]}"
BACKENDS[direct]="${BACKEND_PIDS[0]}"
BACKENDS[nginx]="${BACKEND_PIDS[*]}"
RESULTS="$WORK/results.tsv"
: >"$RESULTS"

# POST bodies, as wrk scripts.
for size in 1024 16384; do
	cat >"$WORK/post$size.lua" <<EOF
wrk.method = "POST"
wrk.body = string.rep("x", $size)
wrk.headers["Content-Type"] = "application/octet-stream"
EOF
done

# workload name: sets CONNS, PATHQ (path and query), SCRIPT (wrk -s) and
# CLIENT (wrk, or big for bench/bigclient).
workload() {
	SCRIPT="" PATHQ="/" CONNS=64 CLIENT=wrk
	case $1 in
	get64) ;;
	post1k) CONNS=32 SCRIPT="$WORK/post1024.lua" ;;
	post16k) CONNS=32 SCRIPT="$WORK/post16384.lua" ;;
	big1m) CONNS=16 PATHQ="/big" CLIENT=${BIG_CLIENT:-big} ;;
	conns1000) CONNS=1000 ;;
	rule) PATHQ="/?env=beta1" ;;
	*) die "unknown workload $1" ;;
	esac
}

# run workload target duration [keep]: one wrk run; with keep, its figures
# go to $RESULTS.
run() {
	local w=$1 t=$2 d=$3 keep=${4:-} out="$WORK/wrk.out"
	local p0 b0 p1 b1 s0 s1 l0 l1
	workload "$w"
	p0=$(cpu_ticks ${PROXY[$t]})
	b0=$(cpu_ticks ${BACKENDS[$t]})
	s0=$(core_ticks "$SERVER_CPUS")
	l0=$(core_ticks "$LOAD_CPUS")
	if [[ $CLIENT == big ]]; then
		"${ON_LOAD[@]}" "$WORK/bin/bigclient" -c "$CONNS" -d "$d" -host "$HOST" "${URL[$t]}$PATHQ" >"$out"
	else
		"${ON_LOAD[@]}" wrk -t1 -c"$CONNS" -d"$d" --latency ${SCRIPT:+-s "$SCRIPT"} -H "Host: $HOST" "${URL[$t]}$PATHQ" >"$out"
	fi
	p1=$(cpu_ticks ${PROXY[$t]})
	b1=$(cpu_ticks ${BACKENDS[$t]})
	s1=$(core_ticks "$SERVER_CPUS")
	l1=$(core_ticks "$LOAD_CPUS")
	[[ -n $keep ]] || return 0
	local rps reqs p50 p99 bad
	rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
	reqs=$(awk '/requests in/ {print $1}' "$out")
	p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
	p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
	bad=$(awk '/Non-2xx|Socket errors/ {print}' "$out")
	[[ -z $bad ]] || log "  $w $t: $bad"
	awk -v w="$w" -v t="$t" -v rps="$rps" -v n="$reqs" -v p50="$p50" -v p99="$p99" \
		-v pc=$((p1 - p0)) -v bc=$((b1 - b0)) -v hz="$CLK_TCK" -v proxy="${PROXY[$t]}" \
		-v s="$s0 $s1" -v l="$l0 $l1" 'function busy(x, a) {
			split(x, a, " ")
			return a[1] == "-" || a[4] == a[2] ? "-" : sprintf("%.0f", 100 * (a[3] - a[1]) / (a[4] - a[2]))
		}
		BEGIN {
		pcpu = proxy == "" ? "-" : sprintf("%.1f", pc / hz * 1e6 / n)
		printf "%s\t%s\t%.0f\t%s\t%s\t%s\t%.1f\t%s\t%s\n", w, t, rps, p50, p99, pcpu, bc / hz * 1e6 / n, busy(s), busy(l) }' >>"$RESULTS"
	log "  $(tail -1 "$RESULTS")"
}

log "warming up ($WARMUP each)"
for w in $WORKLOADS; do
	for t in "${TARGETS[@]}"; do run "$w" "$t" "$WARMUP"; done
done
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "measuring: $REPS rounds of ${TARGETS[*]} per workload ($WORKLOADS), $DURATION each"
log "  workload  target  req/s  p50ms  p99ms  proxyCPUus/req  backendCPUus/req  server-core%  load-core%"
for ((i = 0; i < REPS; i++)); do
	for w in $WORKLOADS; do
		for t in "${TARGETS[@]}"; do run "$w" "$t" "$DURATION" keep; done
	done
done

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# --- tables --------------------------------------------------------------------

median() {
	sort -g | awk '{v[NR] = $1} END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
col() { # workload target column
	awk -F'\t' -v w="$1" -v t="$2" -v c="$3" '$1 == w && $2 == t && $c != "-" {print $c}' "$RESULTS" | median
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f", a / b }'; }
# The machine's speed may drift between rounds; each round measured nginx
# and sluice back to back, so their per-round ratios are steadier.
paired() { # workload column [target]
	awk -F'\t' -v w="$1" -v c="$2" -v t="${3:-sluice}" '$1 != w {next} $2 == "nginx" {n = $c} $2 == t && n != "" {printf "%.2f\n", $c / n}' "$RESULTS"
}
has() { [[ " ${TARGETS[*]} " == *" $1 "* ]]; }

echo
echo "$(date -u +%Y-%m-%d) · $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)) · $(uname -sr) · $(go version | awk '{print $3}') · $("$NGINX" -v 2>&1 | awk -F/ '{print "nginx " $2}')"
echo "wrk -t1$([[ " $WORKLOADS " == *" big1m "* && ${BIG_CLIENT:-big} == big ]] && echo " (big1m: bench/bigclient)"), medians of $REPS interleaved runs of $DURATION; servers on CPU ${SERVER_CPUS:-any}, load on CPU ${LOAD_CPUS:-any}"
echo "load average (1, 5, 15 min) when the measuring began: $LOAD_BEFORE; when it ended: $LOAD_AFTER"
for w in $WORKLOADS; do
	workload "$w"
	echo
	echo "### $w ($CONNS connections, ${SCRIPT:+POST }$PATHQ)"
	echo
	echo "| target | req/s | × direct | × nginx | p50 ms | p99 ms | proxy CPU µs/req | × nginx | backend CPU µs/req | server core busy % | load core busy % |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	declare -A RPS=() PCPU=()
	for t in "${TARGETS[@]}"; do
		RPS[$t]=$(col "$w" "$t" 3)
		PCPU[$t]=$(col "$w" "$t" 6)
	done
	for t in "${TARGETS[@]}"; do
		printf '| %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$t" "${RPS[$t]}" \
			"$(ratio "${RPS[$t]}" "${RPS[direct]:--}")" "$(ratio "${RPS[$t]}" "${RPS[nginx]:--}")" \
			"$(col "$w" "$t" 4)" "$(col "$w" "$t" 5)" "${PCPU[$t]}" "$(ratio "${PCPU[$t]}" "${PCPU[nginx]:--}")" "$(col "$w" "$t" 7)" \
			"$(col "$w" "$t" 8)" "$(col "$w" "$t" 9)"
	done
done

if has nginx && has sluice; then
	echo
	echo "### sluice / nginx per workload: medians of the round-by-round ratios (the rounds in brackets)"
	echo
	echo "| workload | req/s ÷ nginx | CPU/req ÷ nginx |"
	echo "|---|---:|---:|"
	for w in $WORKLOADS; do
		for t in sluice sluiceb; do
			has "$t" || continue
			r=$(paired "$w" 3 "$t" | tr '\n' ' ')
			c=$(paired "$w" 6 "$t" | tr '\n' ' ')
			printf '| %s%s | %s [%s] | %s [%s] |\n' "$w" "${t#sluice}" "$(paired "$w" 3 "$t" | median)" "${r% }" "$(paired "$w" 6 "$t" | median)" "${c% }"
		done
	done
fi
