# Helpers shared by the benchmark scripts (sourced, not run): progress lines, the
# Debian packages a fresh machine lacks, CPU accounting from /proc.

progress() { echo "bench: $*" >&2; }

# need CMD:PACKAGE ... — installs the packages whose command is missing.
need() {
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair##*:}")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    progress "installing ${missing[*]}"
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
  fi
}

# CPU seconds (user+system, all threads) of the given pids.
cpu_of() {
  local total=0 hz p t
  hz=$(getconf CLK_TCK)
  for p in "$@"; do
    [ -n "$p" ] && [ -r "/proc/$p/stat" ] || continue
    t=$(awk '{print $14 + $15}' /proc/$p/stat)
    total=$((total + t))
  done
  echo "scale=3; $total / $hz" | bc
}

# Host CPU jiffies as "busy total" (all cores; idle and iowait are not busy).
host_jiffies() { awk '/^cpu / {t=0; for (i=2; i<=NF; i++) t+=$i; print t-$5-$6, t}' /proc/stat; }

# thread_switches PID — per thread name: voluntary, involuntary context switches, CPU ticks
# (utime + stime), summed over the threads of that name ("name vol invol ticks" lines).
thread_switches() {
  local t comm
  for t in /proc/"$1"/task/*; do
    comm=$(tr ' ' '_' <"$t/comm" 2>/dev/null) || continue
    echo "$comm $(awk '$1 == "voluntary_ctxt_switches:" {v=$2} $1 == "nonvoluntary_ctxt_switches:" {n=$2} END {print v+0, n+0}' "$t/status" 2>/dev/null) $(awk '{print $14 + $15}' "$t/stat" 2>/dev/null)"
  done | awk '{v[$1]+=$2; n[$1]+=$3; c[$1]+=$4} END {for (k in v) print k, v[k], n[k], c[k]}' | sort
}

# thread_deltas BEFORE AFTER — per thread name between two `thread_switches` snapshots:
# "name voluntary/involuntary/CPU-ticks" for each thread that used CPU, on one line.
thread_deltas() {
  join "$1" "$2" | awk '{d = $7 - $4; if (d > 0) printf "%s %d/%d/%d  ", $1, $5 - $2, $6 - $3, d}'
}

# Field of /proc/PID/status (e.g. Threads, VmRSS in kB).
proc_status() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# PSS of PID in kB (/proc/PID/smaps_rollup): each page divided by the processes that map it.
proc_pss() { awk '$1 == "Pss:" {print $2}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }

# Context switches of all PID's threads: "voluntary involuntary" (a voluntary one is a
# thread that went to sleep waiting; an involuntary one a thread the scheduler preempted).
context_switches() {
  cat /proc/"$1"/task/*/status 2>/dev/null \
    | awk '$1 == "voluntary_ctxt_switches:" {v += $2} $1 == "nonvoluntary_ctxt_switches:" {n += $2} END {print v + 0, n + 0}'
}
