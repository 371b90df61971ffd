#!/bin/sh
# Runs every C/R test program WITHOUT checkpoint/restart (start, wait until ready, trigger, read the
# verdict) and prints TAP.  This proves each program on targets that have no C/R engine yet.
# Usage: sh run-plain.sh [BIN_DIR [WORK_DIR]]; the programs are the executables in BIN_DIR
# (default ./bin, where crlab's build layer puts them).  Plain runs need no long sleeps, so
# CRTEST_SLEEP_MS defaults to 1000 here.
bin=${1:-bin}
work=${2:-/tmp/crlab-cr-plain}
: "${CRTEST_SLEEP_MS:=1000}"
export CRTEST_SLEEP_MS
case $bin in /*) ;; *) bin=$(pwd)/$bin ;; esac

names=""
for f in "$bin"/*; do
    [ -f "$f" ] && [ -x "$f" ] && names="$names ${f##*/}"
done
set -- $names
if [ $# -eq 0 ]; then
    echo "1..0"
    echo "Bail out! no test programs in $bin (crlab's build layer compiles suites/cr/*.c there)"
    exit 1
fi
echo "1..$#"
n=0
for name; do
    n=$((n + 1))
    dir=$work/$name
    rm -rf "$dir" && mkdir -p "$dir" || { echo "not ok $n - $name"; echo "# cannot create $dir"; continue; }
    # the launcher returns once the test is ready (0) or failed to set up (non-zero)
    if ! (cd "$dir" && "$bin/$name" --outfile out --pidfile pid); then
        echo "not ok $n - $name"
        echo "# not ready: $(cat "$dir/out" 2>/dev/null) $(tail -n 3 "$dir/$name.log" 2>/dev/null | tr '\n' ' ')"
        continue
    fi
    pid=$(cat "$dir/pid")
    kill -TERM "$pid"
    i=0
    while [ ! -e "$dir/out" ] && [ $i -lt 600 ]; do sleep 0.2; i=$((i + 1)); done
    verdict=$(cat "$dir/out" 2>/dev/null)
    if [ "$verdict" = PASS ]; then
        echo "ok $n - $name"
    else
        echo "not ok $n - $name"
        echo "# ${verdict:-no verdict within 120 s of the trigger}; log: $(tail -n 3 "$dir/$name.log" 2>/dev/null | tr '\n' ' ')"
        kill -KILL "$pid" 2>/dev/null
    fi
done
