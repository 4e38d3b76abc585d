# Shared by start.sh and stop.sh (sourced, not run): the layout of a cluster folder and
# the helpers that start and stop daemons by the PIDs in their pid files.

die() { echo "slurm/$(basename "$0"): $*" >&2; exit 1; }
say() { echo "slurm/$(basename "$0"): $*"; }

# Sets the path variables for cluster folder $1 (made absolute, since the daemons chdir).
cluster_layout() {
    [[ -n ${1:-} ]] || die "usage: $(basename "$0") DIR"
    DIR=$(realpath -m -- "$1")
    RUN=$DIR/run
    LOG=$DIR/log
    SLURM_CONF_FILE=$DIR/slurm.conf
    DBD_CONF_FILE=$DIR/slurmdbd.conf
    DB_DATA=$DIR/mariadb
    DB_SOCKET=$RUN/mariadb.sock
    # munged runs as user munge, which cannot enter a root-only DIR (pytest's tmp folders are
    # 0700): its socket lives in /run/munge, named per DIR so that several clusters can coexist.
    MUNGE_DIR=/run/munge
    MUNGE_TAG=slurm-$(printf '%s' "$DIR" | md5sum | cut -c1-12)
    MUNGE_SOCKET=$MUNGE_DIR/$MUNGE_TAG.socket
    # Start order; stop.sh walks it backwards. Each daemon's pid file is $RUN/NAME.pid.
    DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)
}

# True while process $1 exists and is not a zombie (an orphan whose reaper is slow).
alive() {
    local state
    state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n $state && $state != Z ]]
}

# Prints the PID recorded for daemon $1 if that process is alive and really is $1
# (a stale pid file may name a reused PID that belongs to something else).
daemon_pid() {
    local file=$RUN/$1.pid pid
    [[ -s $file ]] || return 1
    pid=$(tr -dc '0-9' <"$file")
    [[ -n $pid ]] && alive "$pid" && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]] || return 1
    echo "$pid"
}

# Sends SIGTERM to daemon $1 and waits up to $2 seconds (then SIGKILL) for it to exit.
stop_daemon() {
    local name=$1 timeout=${2:-30} pid i
    if ! pid=$(daemon_pid "$name"); then
        rm -f "$RUN/$name.pid"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        say "$name (pid $pid) ignored SIGTERM for ${timeout}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            alive "$pid" || break
            sleep 0.1
        done
    fi
    rm -f "$RUN/$name.pid"
    say "stopped $name (pid $pid)"
}
