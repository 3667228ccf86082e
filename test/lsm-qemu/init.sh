#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 none /sys/fs/cgroup
mount -t devtmpfs dev /dev 2>/dev/null
say() { echo "PAHLEVAN-LSM-$*"; }
finish() { say "RESULT $1"; sync; poweroff -f; sleep 5; }
lsms=$(cat /sys/kernel/security/lsm 2>/dev/null)
say "LSMS $lsms"
case ",$lsms," in *,bpf,*) ;; *) finish '{"error":"bpf is not an active LSM in the guest (/sys/kernel/security/lsm: '"$lsms"')"}';; esac
mkdir /sys/fs/cgroup/enforced
le() { v=$1; n=$2; o=''; i=0; while [ $i -lt $n ]; do o="$o$(printf %02x $((v & 255)))"; v=$((v >> 8)); i=$((i+1)); done; echo $o; }
kdev() { d=$1; echo $(( ( ((d >> 8) & 4095) << 20 ) | ( (d & 255) | ((d >> 12) & 1048320) ) )); }
cp /plan/setup.txt /tmp/setup.txt; cp /plan/monitor.txt /tmp/monitor.txt; cp /plan/enforce.txt /tmp/enforce.txt
while read hex width what path; do
  case $what in
    cgid) v=$(stat -c %i "$path");;
    ino) v=$(stat -c %i "$path");;
    dev) v=$(kdev $(stat -c %d "$path"));;
  esac
  real=$(le $v $width)
  for f in /tmp/setup.txt /tmp/monitor.txt /tmp/enforce.txt; do sed -i "s/$hex/$real/g" $f; done
done < /plan/sentinels.txt
for f in /tmp/setup.txt /tmp/monitor.txt; do sed 's/^/PAHLEVAN-LSM-PLAN /' $f; done
for p in /bin/busybox /bin/cat /tools/allowed/true /data/allowed.txt /data/tree; do say "STAT $p $(stat -c '%d %i' $p)"; done
mkfifo /tmp/in
/pahlevan-bpfd < /tmp/in > /tmp/out 2> /tmp/err &
exec 3> /tmp/in
waitfor() { n=0; while ! grep -q "^$1 " /tmp/out; do sleep 0.05; n=$((n+1)); [ $n -gt 200 ] && return 1; done; grep "^$1 " /tmp/out | grep -q "^$1 ok"; }
send() { cat "$1" >&3; last=$(tail -n1 "$1" | cut -d' ' -f1); for id in $(cut -d' ' -f1 "$1"); do waitfor $id || { say "HELPER $(grep "^$id " /tmp/out) $(tail -c 600 /tmp/err)"; finish '{"error":"helper command '"$id"' failed: '"$(grep "^$id " /tmp/out | tr '"' "'")"'"}'; }; done; }
send /tmp/setup.txt
# Runs a command inside the enforced cgroup; prints 1 when it succeeded, 0 when it failed.
inside() { sh -c 'echo $$ > /sys/fs/cgroup/enforced/cgroup.procs; '"$1"' >/dev/null 2>&1 && echo 1 || echo 0'; }
outside() { sh -c "$1" >/dev/null 2>&1 && echo 1 || echo 0; }
phase() {
  echo "\"$1\":{\"allowedFile\":$(inside 'cat /data/allowed.txt'),\"secretFile\":$(inside 'cat /data/secret.txt'),\"subtreeFile\":$(inside 'cat /data/tree/new-file'),\"allowedExec\":$(inside '/tools/allowed/true'),\"deniedExec\":$(inside '/tools/denied/true'),\"secretOutside\":$(outside 'cat /data/secret.txt'),\"deniedExecOutside\":$(outside '/tools/denied/true')}"
}
e1=$(phase enforce)
send /tmp/monitor.txt
m=$(phase monitor)
send /tmp/enforce.txt
e2=$(phase enforceAgain)
echo "99 map_dump lsm lsm_counters" >&3
waitfor 99
counters=$(grep '^99 ' /tmp/out | cut -d' ' -f3-)
sleep 0.2
events=$(grep -c '^\* ev lsm/lsm_events' /tmp/out)
n=${PAHLEVAN_OPEN_LOOPS:-0}
if [ "$n" -gt 0 ]; then
  base=$(sh -c '/open-loop open /data/allowed.txt '$n)
  enf=$(sh -c 'echo $$ > /sys/fs/cgroup/enforced/cgroup.procs; /open-loop open /data/allowed.txt '$n)
  base2=$(sh -c '/open-loop open /data/allowed.txt '$n)
  enf2=$(sh -c 'echo $$ > /sys/fs/cgroup/enforced/cgroup.procs; /open-loop open /data/allowed.txt '$n)
  bench=",\"openLoop\":{\"iterations\":$n,\"baselineNs\":[$base,$base2],\"enforcedNs\":[$enf,$enf2]}"
fi
exec 3>&-
finish "{$e1,$m,$e2,\"counters\":\"$counters\",\"events\":$events$bench}"
