#!/usr/bin/env bash
# Stop the cluster that start.sh started in DIR: each daemon by the PID in its pid file,
# in reverse start order, waiting for each to exit.
# Usage: stop.sh DIR [--cancel-jobs]
#   --cancel-jobs  cancel queued and running jobs first. Without it they stay in DIR/state
#                  (running ones keep running) and resume when the cluster restarts.
set -euo pipefail

HERE=$(dirname "$(realpath "$0")")
# shellcheck source=common.sh
source "$HERE/common.sh"
cluster_layout "${1:-}"
CANCEL=0
case ${2:-} in
    "") ;;
    --cancel-jobs) CANCEL=1 ;;
    *) die "unknown option '$2' (usage: $(basename "$0") DIR [--cancel-jobs])" ;;
esac

[[ $(id -u) -eq 0 ]] || die "must run as root (the daemons run as root and munge)"
[[ -d $DIR ]] || die "no cluster folder '$DIR'"
export SLURM_CONF=$SLURM_CONF_FILE

if daemon_pid slurmctld >/dev/null; then
    jobs=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ') || jobs=""
    if [[ -n ${jobs// /} ]]; then
        if ((CANCEL)); then
            say "cancelling jobs: $jobs"
            # shellcheck disable=SC2086
            scancel $jobs || true
            # Give their processes time to exit (slurmd sends SIGKILL after KillWait, 30 s).
            deadline=$((SECONDS + 40))
            while [[ -n $(squeue -h -o %A 2>/dev/null) ]]; do
                ((SECONDS < deadline)) || { say "jobs still listed after 40 s: stopping anyway"; break; }
                sleep 0.2
            done
        else
            say "leaving jobs $jobs in the queue; they resume when the cluster restarts"
        fi
    fi
fi

for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
    stop_daemon "${DAEMONS[i]}"
done
rm -f "$MUNGE_DIR/$MUNGE_TAG".* "$DB_SOCKET"
say "all daemons in $DIR stopped"
