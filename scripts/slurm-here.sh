#!/usr/bin/env bash
# A real single-node SLURM cluster (Debian's slurm-wlm + munge) for tests, started and stopped by pid.
#   scripts/slurm-here.sh start STATE_DIR    # prints `export SLURM_CONF=...` for the caller to eval
#   scripts/slurm-here.sh stop STATE_DIR
# No systemd, cgroups or accounting: proctrack/linuxproc, task/none, one node on 127.0.0.1.
set -euo pipefail

cmd=${1:?start or stop}
state=$(mkdir -p "${2:?state folder}" && cd "$2" && pwd)

stop() {
  for d in slurmd slurmctld munged; do
    if [ -s "$state/$d.pid" ]; then
      pid=$(cat "$state/$d.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      rm -f "$state/$d.pid"
    fi
  done
}

if [ "$cmd" = stop ]; then stop; exit 0; fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi
stop
mkdir -p "$state/munge" "$state/ctld" "$state/spool" "$state/log"
chmod 755 "$state/munge"  # munged refuses a socket folder of mode 700
[ -s "$state/munge.key" ] || { head -c 1024 /dev/urandom > "$state/munge.key"; chmod 400 "$state/munge.key"; }
munged --force --socket="$state/munge/munge.socket.2" --key-file="$state/munge.key" \
  --pid-file="$state/munged.pid" --log-file="$state/log/munged.log" --seed-file="$state/munge.seed"

cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
cat > "$state/slurm.conf" <<CONF
ClusterName=meerkat-test
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=$(id -un)
AuthType=auth/munge
AuthInfo=socket=$state/munge/munge.socket.2
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
MinJobAge=3600
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
export SLURM_CONF=$state/slurm.conf
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF" -N localhost
for _ in $(seq 100); do
  sinfo -h -o %t 2>/dev/null | grep -qx idle && break
  sleep 0.2
done
sinfo -h -o %t | grep -qx idle || { echo "error: the SLURM node did not come up; see $state/log" >&2; stop; exit 1; }
echo "export SLURM_CONF=$SLURM_CONF"
