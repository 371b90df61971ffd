#!/bin/sh
# crlab smoke suite: prints TAP.  crlab sets CRLAB_EXPECT_* from the build it just made.
n=0
result() {  # result STATUS DESCRIPTION [DIAGNOSTIC]
    n=$((n + 1))
    if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; [ -n "$3" ] && echo "# $3"; fi
}

echo "1..8"

rel=$(uname -r)
[ -n "$CRLAB_EXPECT_RELEASE" ] && [ "$rel" = "$CRLAB_EXPECT_RELEASE" ]
result $? "kernel release is the one just built" "running '$rel', built '$CRLAB_EXPECT_RELEASE'"

ver=$(uname -v)
[ -n "$CRLAB_EXPECT_VERSION" ] && [ "$ver" = "$CRLAB_EXPECT_VERSION" ]
result $? "kernel build stamp matches the build" "running '$ver', built '$CRLAB_EXPECT_VERSION'"

mach=$(uname -m)
[ -n "$CRLAB_EXPECT_MACHINE" ] && [ "$mach" = "$CRLAB_EXPECT_MACHINE" ]
result $? "machine is $CRLAB_EXPECT_MACHINE" "uname -m says '$mach'"

# ns_last_pid only exists with CONFIG_CHECKPOINT_RESTORE, which every C/R engine needs
test -w /proc/sys/kernel/ns_last_pid
result $? "/proc/sys/kernel/ns_last_pid exists (CONFIG_CHECKPOINT_RESTORE)" "missing or read-only"

grep -q '^Pid:[[:space:]]*[0-9]' /proc/self/status
result $? "/proc/self/status is readable" "no Pid: line"

# a child's pid must appear in /proc while it lives
sleep 5 & child=$!
test -d "/proc/$child" && grep -q "^PPid:[[:space:]]*$$\$" "/proc/$child/status"
result $? "a child process shows up in /proc with this shell as parent" "pid $child"
kill "$child" 2>/dev/null; wait "$child" 2>/dev/null

out=$(echo crlab-smoke | busybox sed 's/smoke/ok/' | busybox tr a-z A-Z)
[ "$out" = "CRLAB-OK" ]
result $? "busybox pipelines work" "got '$out'"

f=/tmp/crlab-smoke.$$
echo 12345 > "$f" && [ "$(cat "$f")" = 12345 ] && rm "$f"
result $? "tmpfs is writable" "could not write $f"
