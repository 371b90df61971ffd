#!/bin/sh
# run-collection.sh INSTALL_DIR COLLECTION SECONDS: the kernel's run_kselftest.sh for one
# collection, in a process group of its own that is killed after SECONDS (each test inside keeps
# the runner's own timeout from the collection's settings file).
dir=$1 collection=$2 limit=$3
# the runner writes each test's output to >>/dev/stdout, which a devtmpfs without udev lacks
# (the redirection would create a plain file there and swallow the output)
for fd in 0:stdin 1:stdout 2:stderr; do
    [ -L "/dev/${fd#*:}" ] || { rm -f "/dev/${fd#*:}"; ln -s "/proc/self/fd/${fd%%:*}" "/dev/${fd#*:}"; }
done
# cgroup's tests (the freezer among them) look for a cgroup v2 mount; the guest's /init makes none
if grep -qw cgroup2 /proc/filesystems && ! grep -qw cgroup2 /proc/mounts; then
    mkdir -p /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup
fi
cd "$dir" || exit 2
setsid ./run_kselftest.sh -c "$collection" &
runner=$!
marker=/tmp/crlab-kselftest-timeout.$$
rm -f "$marker"
( sleep "$limit" && touch "$marker" && kill -KILL "-$runner" 2>/dev/null ) &
watchdog=$!
wait "$runner"
status=$?
# stop the watchdog and its sleep
pkill -P "$watchdog" 2>/dev/null
kill "$watchdog" 2>/dev/null
wait "$watchdog" 2>/dev/null
# said here, not by the watchdog: stopping the watchdog could otherwise swallow the notice
[ -e "$marker" ] && echo "crlab-kselftest: $collection timed out after $limit s"
rm -f "$marker"
exit "$status"
