#!/bin/sh
# PID 1 of the User-Mode Linux guest started by scripts/uml-run.sh.
#
# The root filesystem is the host's own, read-only (hostfs). The kernel command line
# gives us UML_SCRATCH=<host dir> (unknown KEY=VALUE words become our environment).
# That directory holds the job prepared by uml-run.sh:
#   rw-dirs   one directory per line to remount read-write (hostfs, writes land on host)
#   job.sh    the command to run (cd, environment, exec)
# The command's stdout/stderr go to $UML_SCRATCH/stdout and $UML_SCRATCH/stderr.
# We print exactly one verdict line on the console and power off:
#   UML-VERDICT: exit=N          the command ran and exited with status N
#   UML-VERDICT: setup-failed    the guest could not be prepared (reason printed above it)
# The kernel's own exit status says nothing; uml-run.sh reads the verdict line.

PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH

say() { echo "uml-init: $*" >/dev/console 2>/dev/null || echo "uml-init: $*"; }

poweroff_now() {
    sync
    echo o >/proc/sysrq-trigger
    # sysrq power-off is asynchronous; PID 1 must not exit meanwhile (kernel panic).
    while :; do sleep 1; done
}

setup_fail() {
    say "SETUP FAILED: $*"
    echo "UML-VERDICT: setup-failed" >/dev/console
    poweroff_now
}

mount -t proc proc /proc 2>/dev/null || setup_fail "mount /proc"
# From here on /proc/sysrq-trigger works, so setup_fail can power off.
mount -t sysfs sysfs /sys || setup_fail "mount /sys"
# devtmpfs is normally auto-mounted (CONFIG_DEVTMPFS_MOUNT); mount it if not.
if ! grep -q ' /dev devtmpfs ' /proc/mounts; then
    mount -t devtmpfs devtmpfs /dev || setup_fail "mount /dev"
fi
exec </dev/null >/dev/console 2>&1
mkdir -p /dev/pts /dev/shm 2>/dev/null
# devtmpfs has no /dev/fd (bash process substitution needs it) nor /dev/std*.
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
[ -e /dev/stdin ] || ln -s /proc/self/fd/0 /dev/stdin
[ -e /dev/stdout ] || ln -s /proc/self/fd/1 /dev/stdout
[ -e /dev/stderr ] || ln -s /proc/self/fd/2 /dev/stderr
mount -t devpts devpts /dev/pts 2>/dev/null
mount -t tmpfs tmpfs /dev/shm || setup_fail "mount /dev/shm"
mount -t tmpfs tmpfs /run || setup_fail "mount /run"

[ -n "$UML_SCRATCH" ] || setup_fail "UML_SCRATCH missing from the kernel command line"

# Writable directories: the scratch dir first, then those listed by the host.
mount -t hostfs -o "$UML_SCRATCH" hostfs "$UML_SCRATCH" || setup_fail "remount $UML_SCRATCH rw"
if [ -f "$UML_SCRATCH/rw-dirs" ]; then
    while IFS= read -r d; do
        [ -n "$d" ] || continue
        mount -t hostfs -o "$d" hostfs "$d" || setup_fail "remount $d rw"
    done <"$UML_SCRATCH/rw-dirs"
fi

# Kernel modules: the host has no /lib/modules for this kernel; give modprobe a base
# directory whose lib/modules points at the UML package's modules.
MODBASE=/run/uml-modules
mkdir -p "$MODBASE/lib"
ln -s /usr/lib/uml/modules "$MODBASE/lib/modules"
cat >/run/uml-modprobe <<EOF
#!/bin/sh
exec /sbin/modprobe -d $MODBASE "\$@"
EOF
chmod 755 /run/uml-modprobe
# The kernel's own module requests (e.g. crypto "hmac(md5)" at SCTP listen()) use this.
echo /run/uml-modprobe >/proc/sys/kernel/modprobe || setup_fail "set /proc/sys/kernel/modprobe"

if [ "${UML_NO_SCTP:-0}" != 1 ]; then
    modprobe -d "$MODBASE" sctp || setup_fail "modprobe sctp"
    modprobe -d "$MODBASE" hmac || setup_fail "modprobe hmac"
    modprobe -d "$MODBASE" md5 2>/dev/null || true
fi

ip link set lo up || setup_fail "ip link set lo up"
hostname uml-guest 2>/dev/null || true

[ -f "$UML_SCRATCH/job.sh" ] || setup_fail "no job at $UML_SCRATCH/job.sh"
echo "UML-START" >/dev/console
/bin/sh "$UML_SCRATCH/job.sh" >"$UML_SCRATCH/stdout" 2>"$UML_SCRATCH/stderr" </dev/null
status=$?
sync
echo "UML-VERDICT: exit=$status"
poweroff_now
