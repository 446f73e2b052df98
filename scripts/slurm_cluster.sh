#!/usr/bin/env bash
# A single-node SLURM cluster with accounting on 127.0.0.1, for the suite's `slurm` tests and for
# trying vaelab's SLURM launcher on one machine (docs/guides/cluster.md):
#
#   bash scripts/slurm_cluster.sh start DIR   # munged, MariaDB, slurmdbd, slurmctld, slurmd
#       (MariaDB also holds the databases `optuna` and `mlflow`, user and password vaelab, for
#       shared Optuna studies and an MLflow server: their URLs are printed at the end)
#   export SLURM_CONF=DIR/slurm.conf          # for sbatch, squeue, sacct and vaelab's launcher
#   bash scripts/slurm_cluster.sh stop DIR    # stops exactly the processes `start` started
#
# Needs root and Debian's packages: apt-get install slurmctld slurmd slurm-client slurmdbd munge
# mariadb-server. Runs without systemd or cgroups. Ports: VAELAB_SLURM_PORT (default 16817) and
# the next three (slurmctld, slurmd, slurmdbd, MariaDB), so a machine's own services do not clash.
set -euo pipefail

command=${1:-}
dir=${2:-}
if [[ -z "$command" || -z "$dir" ]]; then
    echo "usage: $0 start|stop DIR" >&2
    exit 2
fi
dir=$(realpath -m "$dir")
pids="$dir/pids"

stop() {
    [[ -f "$pids" ]] || return 0
    # Jobs first, while slurmd can still end their steps (their processes are the cluster's too).
    if [[ -f "$dir/slurm.conf" ]] && SLURM_CONF="$dir/slurm.conf" scontrol ping >/dev/null 2>&1; then
        SLURM_CONF="$dir/slurm.conf" scancel --full --quiet $(SLURM_CONF="$dir/slurm.conf" squeue -h -o %i) 2>/dev/null || true
        for _ in $(seq 150); do
            [[ -z $(SLURM_CONF="$dir/slurm.conf" squeue -h -t running,completing -o %i) ]] && break
            sleep 0.1
        done
    fi
    # SIGTERM to each (newest first: the daemons before the database they report to), then up
    # to 10 s for all of them to end, then SIGKILL to what is left.
    tac "$pids" | while read -r name pid; do kill "$pid" 2>/dev/null || true; done
    for _ in $(seq 100); do
        alive=0
        while read -r name pid; do kill -0 "$pid" 2>/dev/null && alive=1; done <"$pids"
        [[ $alive -eq 0 ]] && break
        sleep 0.1
    done
    tac "$pids" | while read -r name pid; do
        kill -9 "$pid" 2>/dev/null || true
        echo "stopped $name ($pid)"
    done
    rm -f "$pids"
}

if [[ "$command" == stop ]]; then
    stop
    exit 0
fi
if [[ "$command" != start ]]; then
    echo "error: unknown command $command: use start or stop" >&2
    exit 2
fi
for program in munged mariadbd mariadb-install-db slurmdbd slurmctld slurmd sacctmgr sinfo; do
    if ! command -v "$program" >/dev/null; then
        echo "error: $program is missing: apt-get install slurmctld slurmd slurm-client slurmdbd" \
            "munge mariadb-server" >&2
        exit 1
    fi
done
if [[ $(id -u) -ne 0 ]]; then
    echo "error: the cluster's daemons run as root here: run this as root" >&2
    exit 1
fi
if [[ -f "$pids" ]]; then
    echo "error: $dir holds a running cluster ($pids): stop it first" >&2
    exit 1
fi

base=${VAELAB_SLURM_PORT:-16817}
ctld_port=$base dbd_port=$((base + 2)) slurmd_port=$((base + 1)) db_port=$((base + 3))
mkdir -p "$dir"/{munge,mysql,state,spool,log}
trap 'stop' ERR

started() {  # name pid: remember what this script started, for `stop`
    echo "$1 $2" >>"$pids"
}

wait_for() {  # what, then a command that succeeds once it is up
    local what=$1
    shift
    for _ in $(seq 150); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "error: $what did not come up within 15 s: see $dir/log" >&2
    return 1
}

# munge: its own key and socket, as user munge, who must reach them.
if ! runuser -u munge -- test -x "$dir"; then
    echo "error: user munge cannot reach $dir: give a folder every user can traverse (under" \
        "/tmp, say)" >&2
    exit 1
fi
key="$dir/munge/munge.key"
[[ -f "$key" ]] || dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
chown -R munge:munge "$dir/munge"
chmod 755 "$dir/munge"  # munged: the socket's folder open to all who connect
chmod 400 "$key"
socket="$dir/munge/munge.socket"
runuser -u munge -- munged --key-file="$key" --socket="$socket" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/seed"
wait_for munged test -S "$socket"
started munged "$(cat "$dir/munge/munged.pid")"

# MariaDB on 127.0.0.1 only, for slurmdbd's accounting.
if [[ ! -d "$dir/mysql/mysql" ]]; then
    mariadb-install-db --user=root --datadir="$dir/mysql" --auth-root-authentication-method=socket \
        >"$dir/log/mariadb-install.log" 2>&1
fi
nohup mariadbd --user=root --datadir="$dir/mysql" --socket="$dir/mysql.sock" --port="$db_port" \
    --bind-address=127.0.0.1 --pid-file="$dir/mysql.pid" --skip-name-resolve \
    >"$dir/log/mariadb.log" 2>&1 &
started mariadbd $!
wait_for MariaDB mariadb --socket="$dir/mysql.sock" -e "select 1"
mariadb --socket="$dir/mysql.sock" <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
CREATE DATABASE IF NOT EXISTS optuna;
CREATE DATABASE IF NOT EXISTS mlflow;
CREATE USER IF NOT EXISTS 'vaelab'@'127.0.0.1' IDENTIFIED BY 'vaelab';
GRANT ALL ON optuna.* TO 'vaelab'@'127.0.0.1';
GRANT ALL ON mlflow.* TO 'vaelab'@'127.0.0.1';
SQL

cat >"$dir/slurmdbd.conf" <<CONF
AuthType=auth/munge
AuthInfo=socket=$socket
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$dbd_port
SlurmUser=root
LogFile=$dir/log/slurmdbd.log
PidFile=$dir/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$db_port
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
CONF
chmod 600 "$dir/slurmdbd.conf"

cpus=$(nproc --all)  # --all: not OMP_NUM_THREADS (which nproc alone obeys), nor affinity
# The node is this machine by its own name: SLURM_NODELIST names it to the jobs, and a DDP job's
# ranks (Lightning, torchrun) meet at the first node of that list, so the name must resolve.
node=$(hostname)
getent hosts "$node" >/dev/null ||
    echo "warning: $node does not resolve: DDP jobs cannot start (add '127.0.0.1 $node' to /etc/hosts)" >&2
memory=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2))
cat >"$dir/slurm.conf" <<CONF
ClusterName=vaelab
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$dbd_port
AccountingStoragePass=$socket
JobRequeue=1
KillWait=10
NodeName=$node NodeHostname=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$dir/slurm.conf"

# slurmdbd reads the slurmdbd.conf beside $SLURM_CONF.
nohup slurmdbd -D >"$dir/log/slurmdbd.out" 2>&1 &
started slurmdbd $!
wait_for slurmdbd bash -c "exec 3<>/dev/tcp/127.0.0.1/$dbd_port"
sacctmgr -i add cluster vaelab >/dev/null 2>&1 || true

nohup slurmctld -D -i -f "$dir/slurm.conf" >"$dir/log/slurmctld.out" 2>&1 &
started slurmctld $!
wait_for slurmctld scontrol ping
nohup slurmd -D -N "$node" -f "$dir/slurm.conf" >"$dir/log/slurmd.out" 2>&1 &
started slurmd $!
wait_for "the node" bash -c "sinfo -h -N -o %t | grep -qx idle"
trap - ERR
echo "SLURM is up: export SLURM_CONF=$dir/slurm.conf"
echo "Databases: mysql+pymysql://vaelab:vaelab@127.0.0.1:$db_port/optuna (Optuna studies)," \
    "mysql+pymysql://vaelab:vaelab@127.0.0.1:$db_port/mlflow (an MLflow server's store)"
