#!/usr/bin/env bash
# Start a single-node SLURM with accounting whose files all live under DIR:
#   munged -> mariadbd (127.0.0.1) -> slurmdbd -> slurmctld -> slurmd
# Usage: start.sh DIR   (then: source DIR/env.sh; stop with stop.sh DIR)
# Environment: SLURM_CLUSTER_NAME (default mfsweep; fixed for the life of DIR's state).
# Running it again on a healthy cluster only reprints the exports; leftover daemons of a
# broken one are stopped first. Job and accounting state in DIR survive a restart.
set -euo pipefail

HERE=$(dirname "$(realpath "$0")")
# shellcheck source=common.sh
source "$HERE/common.sh"
cluster_layout "${1:-}"

CLUSTER=${SLURM_CLUSTER_NAME:-mfsweep}
PARTITION=debug
WAIT_S=60

[[ $(id -u) -eq 0 ]] || die "must run as root (SlurmUser=root, and munged is started as user munge)"
for cmd in munged mariadbd mariadb-install-db mariadb mariadb-admin slurmdbd slurmctld slurmd \
           sacctmgr sacct sinfo scontrol setpriv ss; do
    command -v "$cmd" >/dev/null || die "$cmd not found: run scripts/slurm/install.sh first"
done
[[ -r /etc/munge/munge.key ]] || die "/etc/munge/munge.key missing: reinstall the munge package"
id munge >/dev/null 2>&1 || die "user munge missing: reinstall the munge package"
[[ $CLUSTER =~ ^[a-z][a-z0-9_]{0,39}$ ]] \
    || die "SLURM_CLUSTER_NAME='$CLUSTER' must be lowercase letters, digits or _, starting with a letter"
# Unix socket paths (mariadb's, slurmd's) are limited to 107 bytes.
((${#DIR} <= 70)) || die "DIR '$DIR' is too long for the unix sockets inside it (keep it <= 70 chars)"

export SLURM_CONF=$SLURM_CONF_FILE
T0=$(date +%s%N)

ctld_up() { [[ $(scontrol ping 2>/dev/null) == *UP* ]]; }
node_state() { sinfo -h -n "$NODE" -o %T 2>/dev/null; }
node_up() { [[ $(node_state) =~ ^(idle|mixed|allocated|completing)$ ]]; }
cluster_answers() { ctld_up && node_up && sacct -n -X -S now >/dev/null 2>&1; }
print_exports() {
    echo "export SLURM_CONF=$SLURM_CONF_FILE"
    echo "# or: source $DIR/env.sh   (in every new shell: without it sbatch, squeue and sacct fail with"
    echo "#     'DNS SRV lookup failed', SLURM's way of saying it found no slurm.conf)"
}

running=()
for d in "${DAEMONS[@]}"; do
    daemon_pid "$d" >/dev/null && running+=("$d")
done
if ((${#running[@]} == ${#DAEMONS[@]})) && [[ -r $SLURM_CONF_FILE ]]; then
    NODE=$(sed -n 's/^NodeName=\([^ ]*\).*/\1/p' "$SLURM_CONF_FILE")
    if cluster_answers; then
        say "already running in $DIR (partition $PARTITION)"
        print_exports
        exit 0
    fi
fi
if ((${#running[@]} > 0)); then
    say "stopping leftover daemons in $DIR: ${running[*]}"
    "$HERE/stop.sh" "$DIR"
fi

# From here on a failure stops whatever this run started, so nothing half-up is left behind.
on_exit() {
    local rc=$?
    if ((rc != 0)); then
        echo "slurm/start.sh: start failed; stopping what was started (logs in $LOG)" >&2
        "$HERE/stop.sh" "$DIR" >&2 || true
    fi
}
trap on_exit EXIT
trap 'echo "slurm/start.sh: line $LINENO: failed: $BASH_COMMAND" >&2' ERR
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$RUN" "$LOG" "$DIR/state" "$DIR/spool/slurmd"

# Ports: those of DIR's previous start when nothing listens there (job steps that outlived a
# restart report to the ports they were launched with), else random unused ones in 20000-32767
# (below Linux's ephemeral range), so that a default install (6817-6819, 3306) or another
# cluster started by this script can run beside this one.
PICKED=()
# True if port $1 is not picked yet and no socket (of ss state filter $2) uses it.
port_free() {
    [[ " ${PICKED[*]} " != *" $1 "* ]] && [[ -z $(ss -Htn state "$2" "( sport = :$1 )") ]]
}
# Sets variable $1 to the port that key $2 had in conf file $3, or to a new unused port.
pick_port() {
    local var=$1 p i
    p=""
    [[ -r $3 ]] && p=$(sed -n "s/^$2=\([0-9]\+\)$/\1/p" "$3" | head -n 1)
    if [[ -z $p ]] || ! port_free "$p" listening; then
        for ((i = 0; i < 500; i++)); do
            p=$((20000 + RANDOM % 12768))
            port_free "$p" all && break
        done
        port_free "$p" all || die "found no unused TCP port in 20000-32767"
    fi
    PICKED+=("$p")
    printf -v "$var" '%s' "$p"
}
pick_port CTLD_PORT SlurmctldPort "$SLURM_CONF_FILE"
pick_port SLURMD_PORT SlurmdPort "$SLURM_CONF_FILE"
pick_port DBD_PORT DbdPort "$DBD_CONF_FILE"
pick_port DB_PORT StoragePort "$DBD_CONF_FILE"

HOST=$(hostname -s)
NODE_LINE=$(slurmd -C | head -n 1)
[[ $NODE_LINE == NodeName=* ]] || die "unexpected 'slurmd -C' output: $NODE_LINE"
NODE=$(sed 's/^NodeName=\([^ ]*\).*/\1/' <<<"$NODE_LINE")

cat >"$SLURM_CONF_FILE" <<EOF
# Written by scripts/slurm/start.sh; rewritten on every start.
ClusterName=$CLUSTER
SlurmctldHost=$HOST
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
MailProg=/bin/true
# Schedule a batch job on the next scheduler tick (about 1 s) rather than up to 3 s later.
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobRequeue=1
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# Clients take the munge socket for slurmdbd connections from here, not from AuthInfo.
AccountingStoragePass=$MUNGE_SOCKET
$NODE_LINE State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF

DB_PASS=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
(
    umask 077
    cat >"$DBD_CONF_FILE" <<EOF
# Written by scripts/slurm/start.sh; rewritten (with a new password) on every start.
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=$HOST
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
EOF
)
chmod 600 "$DBD_CONF_FILE"  # slurmdbd refuses a conf that others can read

# Launches daemon $1 (the rest: its command line) detached from this shell's session and
# records its PID. Each runs in the foreground (-F/-D), so $! is the daemon itself.
launch() {
    local name=$1
    shift
    setsid "$@" </dev/null >>"$LOG/$name.out" 2>&1 &
    echo $! >"$RUN/$name.pid"
}

# Waits until "$@" succeeds; fails early, with the log's tail, when daemon $1 has died.
wait_for() {
    local name=$1 what=$2 logfile=$3 pid deadline=$((SECONDS + WAIT_S))
    shift 3
    pid=$(<"$RUN/$name.pid")
    while ((SECONDS < deadline)); do
        "$@" >/dev/null 2>&1 && return 0
        if ! alive "$pid"; then
            # Errors before the daemon opens its log file only reach its stderr (NAME.out).
            [[ -s $logfile ]] || logfile=$LOG/$name.out
            tail -n 8 "$logfile" >&2 || true
            die "$name exited before $what (see $logfile)"
        fi
        sleep 0.1
    done
    tail -n 8 "$logfile" >&2 || true
    die "$what did not happen within ${WAIT_S}s (see $logfile)"
}

munge_ok() { munge -S "$MUNGE_SOCKET" -n </dev/null | unmunge -S "$MUNGE_SOCKET"; }
install -d -o munge -g munge -m 755 "$MUNGE_DIR"
rm -f "$MUNGE_DIR/$MUNGE_TAG".*
launch munged setpriv --reuid=munge --regid=munge --init-groups \
    munged -F --socket="$MUNGE_SOCKET" --pid-file="$MUNGE_DIR/$MUNGE_TAG.pid" \
    --seed-file="$MUNGE_DIR/$MUNGE_TAG.seed"
wait_for munged "munged answers" "$LOG/munged.out" munge_ok

# The marker is written last, so an interrupted initialisation is redone from scratch.
if [[ ! -e $DB_DATA/.initialized ]]; then
    rm -rf "$DB_DATA"
    mkdir -p "$DB_DATA"
    mariadb-install-db --no-defaults --user=root --datadir="$DB_DATA" --skip-test-db \
        --auth-root-authentication-method=socket --innodb-log-file-size=8M \
        >"$LOG/mariadb-install.log" 2>&1 || die "mariadb-install-db failed (see $LOG/mariadb-install.log)"
    touch "$DB_DATA/.initialized"
fi
launch mariadbd mariadbd --no-defaults --user=root --datadir="$DB_DATA" --bind-address=127.0.0.1 \
    --port="$DB_PORT" --socket="$DB_SOCKET" --pid-file="$RUN/mariadbd.pid" \
    --log-error="$LOG/mariadbd.log" --skip-name-resolve --skip-log-bin \
    --innodb-log-file-size=8M --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900
wait_for mariadbd "mariadbd answers" "$LOG/mariadbd.log" \
    mariadb-admin --no-defaults --socket="$DB_SOCKET" ping
mariadb --no-defaults --socket="$DB_SOCKET" -u root <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
EOF

launch slurmdbd slurmdbd -D
wait_for slurmdbd "slurmdbd answers" "$LOG/slurmdbd.log" sacctmgr -n show cluster
if [[ $'\n'$(sacctmgr -n -P show cluster format=cluster)$'\n' != *$'\n'"$CLUSTER"$'\n'* ]]; then
    # Also creates account root with user root, which is all jobs submitted as root need.
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
fi

launch slurmctld slurmctld -D -i
wait_for slurmctld "slurmctld answers" "$LOG/slurmctld.log" ctld_up

launch slurmd slurmd -D
resumed=0
node_up_or_resume() {
    node_up && return 0
    # Drained/down state left by an earlier run survives in DIR/state; give the node back once.
    if ((resumed == 0)) && [[ $(node_state) =~ ^(drain|drained|draining|down)$ ]]; then
        scontrol update nodename="$NODE" state=resume && resumed=1
    fi
    return 1
}
wait_for slurmd "node $NODE is idle" "$LOG/slurmd.log" node_up_or_resume
wait_for slurmdbd "sacct answers" "$LOG/slurmdbd.log" sacct -n -X -S now

echo "export SLURM_CONF=$SLURM_CONF_FILE" >"$DIR/env.sh"
say "cluster $CLUSTER up in $((($(date +%s%N) - T0) / 1000000)) ms:" \
    "partition $PARTITION, node $NODE, logs in $LOG"
print_exports
