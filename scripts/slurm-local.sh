#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine, for trying `cffaudit sweep --executor slurm`
# and for the tests marked `slurm`.
#
#   bash scripts/slurm-local.sh start   install (Debian packages, needs root) and start munged,
#                                       MariaDB + slurmdbd (accounting, read by sacct),
#                                       slurmctld and slurmd; wait until the node is idle
#   bash scripts/slurm-local.sh stop    stop exactly the daemons `start` started (pid files)
#   bash scripts/slurm-local.sh status  what runs
#
# Everything it writes lives under $CFFAUDIT_SLURM_DIR (default /tmp/cffaudit-slurm), except
# /etc/slurm/slurm.conf and /etc/slurm/slurmdbd.conf, which are symlinks to the files there so
# that sinfo/sbatch/sacct find the cluster without SLURM_CONF (existing real files are left
# alone; then export SLURM_CONF=$CFFAUDIT_SLURM_DIR/slurm.conf). The node is sized to this
# machine (nproc, memory), jobs are requeueable (JobRequeue=1), and processes are tracked
# without cgroups (proctrack/linuxproc, task/none), so it also runs in a container.
# Idempotent: a second `start` finds the daemons alive and returns at once.
set -euo pipefail

STATE=${CFFAUDIT_SLURM_DIR:-/tmp/cffaudit-slurm}
CLUSTER=cffaudit
# Ports away from the defaults (6817-6819, 3306), so that a Slurm or MySQL already on the
# machine is not disturbed.
CTLD_PORT=16817
SLURMD_PORT=16818
DBD_PORT=16819
DB_PORT=16306
DB_NAME=cffaudit_slurm_acct
DB_USER=cffaudit_slurm
DB_PASS=cffaudit-local-only
HOST=$(hostname -s)
# CFFAUDIT_SLURM_ACCOUNTING=0: no MariaDB and slurmdbd (sacct then has nothing to say).
ACCOUNTING=${CFFAUDIT_SLURM_ACCOUNTING:-1}
# The daemons and the commands this script runs read the configuration written here.
export SLURM_CONF=$STATE/slurm.conf

say() { echo "slurm-local: $*"; }
die() { echo "slurm-local: error: $*" >&2; exit 1; }

alive() {  # alive NAME: the daemon NAME started by this script is running
    local pid
    [ -f "$STATE/$1.pid" ] || return 1
    pid=$(cat "$STATE/$1.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

wait_for() {  # wait_for SECONDS WHAT COMMAND...: retry COMMAND until it succeeds
    local limit=$1 what=$2 i
    shift 2
    for ((i = 0; i < limit * 4; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.25
    done
    die "$what did not come up within ${limit}s; see the logs in $STATE"
}

install_packages() {
    local want=()
    if [ "$ACCOUNTING" = 1 ]; then
        command -v slurmdbd >/dev/null 2>&1 || want+=(slurmdbd)
        command -v mariadbd >/dev/null 2>&1 || want+=(mariadb-server)
    fi
    command -v slurmctld >/dev/null 2>&1 || want+=(slurmctld)
    command -v slurmd >/dev/null 2>&1 || want+=(slurmd)
    command -v sbatch >/dev/null 2>&1 || want+=(slurm-client)
    command -v munged >/dev/null 2>&1 || want+=(munge)
    [ "${#want[@]}" -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 || die "missing ${want[*]} and no apt-get to install them; install Slurm (slurmctld, slurmd, slurmdbd), munge and MariaDB by hand"
    [ "$(id -u)" = 0 ] || die "missing ${want[*]}; run as root to install them (apt-get install ${want[*]})"
    say "installing ${want[*]} (Debian packages)"
    # The packages' own service start-up is not wanted: this script starts the daemons.
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "${want[@]}" >"$STATE/apt.log" 2>&1 || {
        apt-get update -q >>"$STATE/apt.log" 2>&1 &&
            apt-get install -y -q --no-install-recommends "${want[@]}" >>"$STATE/apt.log" 2>&1
    } || die "apt-get install ${want[*]} failed; see $STATE/apt.log"
}

link_conf() {  # link_conf NAME: /etc/slurm/NAME -> $STATE/NAME, unless a real file is there
    local target=/etc/slurm/$1
    mkdir -p /etc/slurm
    if [ -L "$target" ] || [ ! -e "$target" ]; then
        ln -sfn "$STATE/$1" "$target"
    elif [ "$1" = slurm.conf ]; then
        say "note: $target exists and is not this script's; export SLURM_CONF=$STATE/slurm.conf to use this cluster"
    fi
}

write_configs() {
    local cpus mem_mb
    cpus=$(nproc)
    # Leave a quarter of the memory (at least 512 MB) to the daemons and the driver.
    mem_mb=$(awk '/^MemTotal:/ { m = int($2 / 1024); r = int(m / 4); if (r < 512) r = 512; print m - r }' /proc/meminfo)
    cat >"$STATE/slurm.conf" <<EOF
# Written by scripts/slurm-local.sh: one node, this machine ($cpus CPUs, ${mem_mb} MB for jobs).
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
# A container has no usable cgroups: track processes by parentage, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
JobRequeue=1
# Requeue and scancel end a job with SIGTERM, then SIGKILL after KillWait seconds.
KillWait=5
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
$(if [ "$ACCOUNTING" = 1 ]; then
        printf 'AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=127.0.0.1\nAccountingStoragePort=%s\n' "$DBD_PORT"
    else
        echo "AccountingStorageType=accounting_storage/none  # no MariaDB/slurmdbd: sacct cannot answer"
    fi)
JobCompType=jobcomp/none
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    cat >"$STATE/slurmdbd.conf" <<EOF
# Written by scripts/slurm-local.sh: accounting in the MariaDB instance under $STATE.
AuthType=auth/munge
DbdHost=$HOST
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$STATE/slurmdbd.pid
LogFile=$STATE/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=$DB_NAME
EOF
    chmod 600 "$STATE/slurmdbd.conf"
    link_conf slurm.conf
    link_conf slurmdbd.conf
}

start_munge() {
    if alive munged; then return 0; fi
    if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
        say "munged already runs (not started by this script); using it"
        return 0
    fi
    [ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge "$STATE/munge"
    chown munge:munge /run/munge "$STATE/munge"
    chmod 755 /run/munge
    # munged refuses to run as root; it runs as the munge user, as Debian's service does.
    runuser -u munge -- munged --pid-file="$STATE/munge/munged.pid" --log-file="$STATE/munge/munged.log" \
        --seed-file="$STATE/munge/munged.seed"
    wait_for 10 munged sh -c 'munge -n </dev/null | unmunge'
    ln -sfn "$STATE/munge/munged.pid" "$STATE/munged.pid"
}

start_mariadb() {
    local db=$STATE/mariadb  # owned by the mysql user, which the server runs as
    if alive mariadb; then return 0; fi
    mkdir -p "$db"
    chown mysql:mysql "$db"
    if [ ! -d "$db/data/mysql" ]; then
        mariadb-install-db --user=mysql --datadir="$db/data" --auth-root-authentication-method=socket \
            --skip-test-db >"$STATE/mariadb-install.log" 2>&1 || die "mariadb-install-db failed; see $STATE/mariadb-install.log"
    fi
    # A small server: accounting for one node needs little memory.
    mariadbd --no-defaults --user=mysql --datadir="$db/data" --socket="$db/mysqld.sock" \
        --port=$DB_PORT --bind-address=127.0.0.1 --pid-file="$db/mariadb.pid" \
        --log-error="$db/mariadb.log" --innodb-buffer-pool-size=64M --innodb-lock-wait-timeout=900 --skip-name-resolve >/dev/null 2>&1 &
    ln -sfn "$db/mariadb.pid" "$STATE/mariadb.pid"
    wait_for 60 MariaDB mariadb --no-defaults --socket="$db/mysqld.sock" -u root -e "SELECT 1"
    mariadb --no-defaults --socket="$db/mysqld.sock" -u root <<EOF
CREATE DATABASE IF NOT EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'127.0.0.1';
FLUSH PRIVILEGES;
EOF
}

start_slurmdbd() {
    if alive slurmdbd; then return 0; fi
    slurmdbd  # reads slurmdbd.conf beside $SLURM_CONF
    wait_for 60 slurmdbd sacctmgr -n list cluster
    if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
        sacctmgr -i add cluster "$CLUSTER" >/dev/null
    fi
}

start_slurm() {
    mkdir -p "$STATE/ctld" "$STATE/spool"
    if ! alive slurmctld; then
        slurmctld -f "$STATE/slurm.conf"
        wait_for 30 slurmctld scontrol ping
    fi
    if ! alive slurmd; then
        slurmd -f "$STATE/slurm.conf"
    fi
    wait_for 60 "the node $HOST (idle)" node_idle
}

node_idle() {
    local state
    state=$(sinfo -h -n "$HOST" -o '%T' 2>/dev/null) || return 1
    case "$state" in
    idle | mixed | allocated) return 0 ;;
    down* | drain* | fail*)
        # A node left down by an earlier session (e.g. an unclean stop) is brought back.
        scontrol update nodename="$HOST" state=resume >/dev/null 2>&1
        return 1
        ;;
    *) return 1 ;;
    esac
}

accounting_up() { [ "$ACCOUNTING" = 0 ] || { alive mariadb && alive slurmdbd; }; }

start() {
    local t0=$SECONDS
    if alive munged && accounting_up && alive slurmctld && alive slurmd && node_idle; then
        say "already running (state in $STATE)"
        return 0
    fi
    mkdir -p "$STATE"
    install_packages
    write_configs
    start_munge
    if [ "$ACCOUNTING" = 1 ] && ! (start_mariadb && start_slurmdbd); then
        # Slurm still runs without accounting; only sacct cannot answer (cffaudit then
        # reads job states from squeue).
        say "note: accounting (MariaDB + slurmdbd) did not start; running Slurm without it"
        stop_one slurmdbd
        stop_one mariadb
        ACCOUNTING=0
        if alive slurmctld; then stop_one slurmd; stop_one slurmctld; fi
        write_configs
    fi
    start_slurm
    say "cluster '$CLUSTER' up in $((SECONDS - t0)) s: $(sinfo -h -o '%P %D node(s) %c CPUs %m MB %T')"
    say "state and logs in $STATE; stop with: bash scripts/slurm-local.sh stop"
}

stop_one() {  # stop_one NAME: end the daemon NAME started by this script and wait for it
    local pid i
    alive "$1" || { rm -f "$STATE/$1.pid"; return 0; }
    pid=$(cat "$STATE/$1.pid")
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 120; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.25
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "$1 (pid $pid) did not stop within 30 s; killing it"
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$STATE/$1.pid"
}

stop() {
    # Jobs still running are cancelled first, so that slurmd leaves no orphaned processes.
    if alive slurmctld; then
        scancel --full --quiet --user="$(id -un)" >/dev/null 2>&1 || true
    fi
    for d in slurmd slurmctld slurmdbd mariadb munged; do
        stop_one "$d"
    done
    for f in slurm.conf slurmdbd.conf; do
        if [ -L "/etc/slurm/$f" ] && [ "$(readlink "/etc/slurm/$f")" = "$STATE/$f" ]; then
            rm -f "/etc/slurm/$f"
        fi
    done
    say "stopped (state kept in $STATE; delete it to start from scratch)"
}

status() {
    for d in munged mariadb slurmdbd slurmctld slurmd; do
        if alive "$d"; then echo "$d: running (pid $(cat "$STATE/$d.pid"))"; else echo "$d: not running"; fi
    done
    sinfo 2>/dev/null || true
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
*) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
