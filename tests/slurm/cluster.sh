#!/usr/bin/env bash
# A one-node SLURM cluster on this machine for tests/test_slurm.py (Debian slurmctld,
# slurmd, slurm-client and munge; root; no systemd, cgroups or slurmdbd).
#
#   tests/slurm/cluster.sh start RUN_DIR   # configure, start, wait until the node is idle
#   tests/slurm/cluster.sh stop RUN_DIR    # stop what start started, remove its config
#
# slurm.conf must be /etc/slurm/slurm.conf: the plugin's job step (srun inside the job)
# runs without SLURM_CONF. An existing slurm.conf that this script did not write is
# left alone (exit 3). State, logs, PID files and the job completion log (jobcomp.log,
# as there is no accounting) live under RUN_DIR. The node advertises FAKE_GPUS GPUs
# (default 2, backed by /dev/null and friends: SLURM sets CUDA_VISIBLE_DEVICES for
# jobs that ask for them) and NODE_CPUS CPUs (default 4, more than a small machine
# has, so that jobs overlap) with 64 GB of memory.
set -euo pipefail

ACTION=${1:?start or stop}
RUN=${2:?run folder}
FAKE_GPUS=${FAKE_GPUS:-2}
NODE_CPUS=${NODE_CPUS:-4}
PARTITION=${PARTITION:-ci}
CONF_DIR=/etc/slurm
MARKER="# genda-pse test cluster"

stop() {
  local f pid
  for f in "$RUN/slurmd.pid" "$RUN/slurmctld.pid" "$RUN/munged.pid"; do
    [ -s "$f" ] || continue
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$f"
  done
  for f in "$CONF_DIR/slurm.conf" "$CONF_DIR/gres.conf"; do
    if [ -f "$f" ] && head -1 "$f" | grep -qx "$MARKER"; then rm -f "$f"; fi
  done
}

if [ "$ACTION" = stop ]; then stop; exit 0; fi
[ "$ACTION" = start ] || { echo "usage: $0 start|stop RUN_DIR" >&2; exit 2; }

if [ -f "$CONF_DIR/slurm.conf" ] && ! head -1 "$CONF_DIR/slurm.conf" | grep -qx "$MARKER"; then
  echo "$CONF_DIR/slurm.conf exists and is not this test's: not touching a real cluster's configuration" >&2
  exit 3
fi
for daemon in slurmctld slurmd; do
  if pgrep -x "$daemon" >/dev/null; then
    echo "$daemon is already running here: not starting a second cluster" >&2
    exit 3
  fi
done
mkdir -p "$RUN/spool/slurmctld" "$RUN/spool/slurmd" "$RUN/log" "$CONF_DIR"

# munge: Debian's package makes the key; munged runs as the munge user (as root it
# refuses: "Logfile is insecure"). One that already answers is used as it is.
if ! { munge -n | unmunge; } >/dev/null 2>&1; then
  if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile /etc/munge/munge.key --force
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
  fi
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 50); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
  cp /run/munge/munged.pid "$RUN/munged.pid"
  munge -n | unmunge >/dev/null
fi

HOST=$(hostname -s)
GRES_NODE="" GRES_TYPES=""
if [ "$FAKE_GPUS" -gt 0 ]; then
  # gres/gpu needs one File= per GPU (Count= alone sets the node INVAL), and no autodetection
  DEVICES=(/dev/null /dev/zero /dev/full /dev/urandom)
  FILES=$(IFS=,; echo "${DEVICES[*]:0:$FAKE_GPUS}")
  GRES_NODE="Gres=gpu:$FAKE_GPUS" GRES_TYPES="GresTypes=gpu"
  printf '%s\nAutoDetect=off\nNodeName=%s Name=gpu File=%s\n' "$MARKER" "$HOST" "$FILES" > "$CONF_DIR/gres.conf"
fi
cat > "$CONF_DIR/slurm.conf" <<CONF
$MARKER
ClusterName=genda-ci
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$RUN/log/jobcomp.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# without a default every job takes the whole node's memory
DefMemPerCPU=1024
SchedulerType=sched/backfill
ReturnToService=2
# finished jobs stay visible to squeue (the status query without accounting) and scontrol
MinJobAge=600
# the node as configured here, not as detected
SlurmdParameters=config_overrides
StateSaveLocation=$RUN/spool/slurmctld
SlurmdSpoolDir=$RUN/spool/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$RUN/log/slurmctld.log
SlurmdLogFile=$RUN/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SlurmctldPort=6817
SlurmdPort=6818
InactiveLimit=0
KillWait=5
Waittime=0
$GRES_TYPES
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$NODE_CPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$NODE_CPUS ThreadsPerCore=1 RealMemory=64000 $GRES_NODE State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF

slurmctld -c   # -c: no state from an earlier run
slurmd
for _ in $(seq 150); do
  [ "$(sinfo -h -n "$HOST" -o %T 2>/dev/null)" = idle ] && break
  sleep 0.2
done
state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null || true)
if [ "$state" != idle ]; then
  echo "node $HOST is '$state', not idle; slurmctld log:" >&2
  tail -20 "$RUN/log/slurmctld.log" >&2 || true
  stop
  exit 1
fi
sinfo -o '%P %a %D %T %N %c %m %G'
