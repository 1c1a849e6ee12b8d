#!/usr/bin/env bash
# Start a one-node SLURM cluster on this machine (for the tests; needs root).
# Installs Debian's slurm-wlm and munge if missing. Idempotent: does nothing
# if `sinfo` already answers.
set -euo pipefail
if sinfo -h >/dev/null 2>&1 && [ "$(sinfo -h -o %t | head -n1)" = "idle" ] && [ "${RESTART:-0}" != 1 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "start_local_cluster.sh: needs root (apt-get install slurm-wlm munge, daemons)" >&2
  exit 1
fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi
host=$(hostname -s)
cpus=$(nproc)
memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))

mkdir -p /etc/munge /run/munge /var/log/munge /var/lib/munge
[ -s /etc/munge/munge.key ] || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
chmod 700 /etc/munge; chmod 400 /etc/munge/munge.key; chmod 755 /run/munge
pgrep -x munged >/dev/null || su -s /bin/sh munge -c /usr/sbin/munged

conf_dir=/etc/slurm
mkdir -p "$conf_dir" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat > "$conf_dir/slurm.conf" <<CONF
ClusterName=local
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
# a requeued job waits cred_expire seconds before it may start again (default 120)
AuthInfo=cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobRequeue=1
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SchedulerType=sched/backfill
# the main and backfill schedulers pass every 5 s (defaults 60 and 30): a requeued job starts again soon after
# cred_expire, not up to a minute later
SchedulerParameters=defer_batch=0,sched_interval=5,bf_interval=5
MinJobAge=300
KillWait=10
OverTimeLimit=0
InactiveLimit=0
MessageTimeout=20
JobAcctGatherType=jobacct_gather/none
NodeName=$host CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
cat > "$conf_dir/cgroup.conf" <<CONF
CgroupPlugin=cgroup/v1
IgnoreSystemd=yes
CgroupAutomount=no
CONF
if [ "${RESTART:-0}" = 1 ]; then
  pkill -x slurmd || true; pkill -x slurmctld || true; sleep 2
fi
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 60); do
  state=$(sinfo -h -o %t 2>/dev/null | head -n1 || true)
  [ "$state" = "idle" ] && exit 0
  [ "$state" = "down" ] || [ "$state" = "down*" ] || [ "$state" = "drain" ] && scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
  sleep 1
done
echo "start_local_cluster.sh: the node did not become idle:" >&2
sinfo >&2 || true
tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
