#!/bin/sh
# The guest side of crlab's linux-cr engine (crlab/engines/linuxcr.py), run by busybox sh:
#
#   linuxcr checkpoint PID IMAGE_DIR kill|cont [crctl arguments...]
#   linuxcr restore IMAGE_DIR [crctl arguments...]
#   linuxcr probe
#
# Each prints what crctl said and ends with one status line the engine parses:
# "crctl-exit=N" (checkpoint, probe), "restored-pid=PID" or "restart-gone=PID" (restore).

CRCTL=${CRLAB_CRCTL:-/usr/bin/crctl} # the variable: for trying the script elsewhere
IMAGE=checkpoint.img
TASK=task.env
STOP_POLLS=300     # 0.1 s each: how long a stopped task may take to show state T
RESTART_POLLS=1200 # 0.1 s each: how long restart(2) may take before the restored task runs

state() { # the one-letter state of a pid ("" when it is gone)
	sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1
}

tree() { # pid and its descendants, from the ppids in /proc/*/stat (the comm cut away)
	for s in /proc/[0-9]*/stat; do sed 's/ (.*) / /' "$s" 2>/dev/null; done |
		awk -v r="$1" '{ p[$1] = $3 }
			END { t[r] = 1; do { n = 0; for (c in p) if (!(c in t) && (p[c] in t)) { t[c] = 1; n = 1 } } while (n)
			      for (c in t) printf "%s ", c }'
}

checkpoint() {
	pid=$1 dir=$2 after=$3
	shift 3
	mkdir -p "$dir" && rm -f "$dir/$IMAGE" || { echo "crctl-exit=2"; return; }
	# restart(2) keeps the restarting process's cwd: restore() starts crctl there, its output where
	# the task's went (the restored task gets the image's descriptors, crctl's are closed)
	{
		echo "cwd=$(readlink "/proc/$pid/cwd")"
		for n in 0 1 2; do echo "fd$n=$(readlink "/proc/$pid/fd/$n")"; done
	} > "$dir/$TASK"
	t=$(tree "$pid")
	# checkpoint(2) wants its target in group stop
	kill -STOP $t
	i=0
	while [ $i -lt $STOP_POLLS ]; do
		s=$(state "$pid")
		[ "$s" = T ] || [ -z "$s" ] && break
		sleep 0.1
		i=$((i + 1))
	done
	"$CRCTL" checkpoint "$pid" "$dir/$IMAGE" "$@" > "$dir/checkpoint.log" 2>&1
	rc=$?
	if [ $rc = 0 ] && [ "$after" = kill ]; then
		kill -KILL $t
	else
		kill -CONT $t # a refused checkpoint leaves the tree running
	fi
	cat "$dir/checkpoint.log"
	echo "crctl-exit=$rc"
}

restore() {
	dir=$1
	shift
	pidfile=$dir/restored.pid
	rm -f "$pidfile"
	# where the task's files were; a descriptor that was no regular file gets /dev/null, and
	# without TASK (an image from elsewhere) crctl's errors go to restart.log
	cwd=/ o=/dev/null e=$dir/restart.log
	: > "$e"
	if [ -f "$dir/$TASK" ]; then
		c=$(sed -n 's/^cwd=//p' "$dir/$TASK")
		[ -d "$c" ] && cwd=$c
		f=$(sed -n 's/^fd1=//p' "$dir/$TASK")
		[ -f "$f" ] && o=$f
		f=$(sed -n 's/^fd2=//p' "$dir/$TASK")
		[ -f "$f" ] && e=$f
	fi
	n=$(wc -c < "$e")
	# detached like the tests' own launchers: a subshell that exits at once (the restored task is
	# reparented to init), a session of its own, stdin from /dev/null; the pid crctl runs as is
	# the pid of the restored task
	(cd "$cwd" && setsid sh -c 'echo $$ > "$0"; exec "$@"' "$pidfile" "$CRCTL" restart "$dir/$IMAGE" "$@" \
		< /dev/null >> "$o" 2>> "$e" &)
	i=0
	while [ ! -s "$pidfile" ] && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	p=$(cat "$pidfile" 2>/dev/null)
	i=0
	while [ -n "$p" ] && [ $i -lt $RESTART_POLLS ]; do
		c=$(cat "/proc/$p/comm" 2>/dev/null)
		s=$(state "$p")
		[ -z "$c" ] || [ "$s" = Z ] && break
		[ "$c" != crctl ] && [ "$c" != sh ] && break
		sleep 0.1
		i=$((i + 1))
	done
	c=$(cat "/proc/$p/comm" 2>/dev/null)
	s=$(state "$p")
	tail -c +$((n + 1)) "$e" | tail -n 20 # what crctl and the kernel said (or the restored task's first lines)
	if [ -n "$c" ] && [ "$s" != Z ] && [ "$c" != crctl ] && [ "$c" != sh ]; then
		echo "restored-pid=$p"
	else
		echo "restart-gone=$p"
	fi
}

probe() { # checkpoint a stopped sleeper: crctl exit 3 means no checkpoint(2) in this kernel
	sleep 300 < /dev/null > /dev/null 2>&1 &
	p=$!
	kill -STOP $p
	f=/tmp/crlab-linuxcr-probe.img
	rm -f "$f"
	"$CRCTL" checkpoint "$p" "$f" 2>&1
	rc=$?
	kill -KILL $p
	wait $p 2>/dev/null
	rm -f "$f"
	echo "crctl-exit=$rc"
}

command=$1
shift
case "$command" in
checkpoint | restore | probe) "$command" "$@" ;;
*)
	echo "usage: linuxcr checkpoint PID DIR kill|cont ... | restore DIR ... | probe" >&2
	exit 2
	;;
esac
