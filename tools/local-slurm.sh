#!/usr/bin/env bash
# A single-node Slurm cluster on this machine: munge, slurmctld and slurmd on localhost, for trying
# `samat experiment run --launcher slurm` and for its test (tests/cli/test_slurm.py, with --run-slow).
#
#   sudo tools/local-slurm.sh [start]   install what is missing (Debian/Ubuntu), configure, start, run a test job
#   sudo tools/local-slurm.sh start --no-install   the same, but fail where Slurm or munge is missing
#   sudo tools/local-slurm.sh status    what runs, the node and the queue
#   sudo tools/local-slurm.sh stop      stop the two Slurm daemons it started (munge keeps running)
#
# Then, in the shell that submits: export SLURM_CONF=$SAMAT_SLURM_DIR/slurm.conf (start prints the line).
#
# Running it again is harmless: what runs and is configured alike is left alone; a changed configuration
# restarts the daemons. Everything lives in SAMAT_SLURM_DIR (default /var/tmp/samat-slurm): the configuration,
# state, spool, pid files and logs. The daemons use their own ports (SAMAT_SLURM_PORT and the next one, default
# 6827-6828), so a Slurm already on the machine (6817-6818) is not disturbed. It needs root: it installs
# packages, and slurmd starts jobs as their users.
#
# The configuration needs no cgroups and no systemd, so that it runs in containers too: processes are tracked
# by /proc (proctrack/linuxproc), tasks are not bound (task/none), nothing gathers accounting. Without
# accounting `sacct` has nothing to say; the controller keeps ended jobs for an hour (MinJobAge), long enough
# for `squeue --states=all` and `samat experiment status` to show how they ended.
set -euo pipefail

DIR=${SAMAT_SLURM_DIR:-/var/tmp/samat-slurm}
PORT=${SAMAT_SLURM_PORT:-6827}
CONF=$DIR/slurm.conf
NODE=$(hostname -s)
PACKAGES=(slurm-wlm munge)

say() { echo "local-slurm: $*"; }
fail() { echo "local-slurm: error: $*" >&2; exit 1; }

alive() {  # alive PIDFILE: its process runs
    [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

last_errors() {  # last_errors LOG: the error lines at its end, for a message
    [[ -f $1 ]] || { echo "(no log at $1)"; return; }
    tail -n 40 "$1" | grep -iE "error|fatal" | tail -n 5 || tail -n 5 "$1"
}

need_root() {
    [[ $(id -u) -eq 0 ]] || fail "needs root (it installs packages and starts the Slurm daemons): run it with sudo"
}

install() {
    local missing=()
    for cmd in slurmctld slurmd sbatch squeue scontrol munged munge unmunge; do
        command -v "$cmd" >/dev/null || missing+=("$cmd")
    done
    ((${#missing[@]} == 0)) && { say "Slurm and munge are installed ($(slurmd -V))"; return; }
    ((INSTALL)) ||
        fail "${missing[*]} missing: sudo tools/local-slurm.sh installs them (apt-get install ${PACKAGES[*]})"
    command -v apt-get >/dev/null ||
        fail "${missing[*]} missing and no apt-get: install Slurm (slurmctld, slurmd, client) and munge by hand"
    say "installing ${PACKAGES[*]} (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || fail "apt-get update failed"
    apt-get install -y -qq "${PACKAGES[@]}" >/dev/null || fail "apt-get install ${PACKAGES[*]} failed"
    say "installed $(slurmd -V)"
}

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        say "munge answers"
        return
    fi
    if [[ ! -s /etc/munge/munge.key ]]; then
        say "creating /etc/munge/munge.key"
        mungekey --create --keyfile /etc/munge/munge.key 2>/dev/null ||
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
        chown munge: /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    fi
    say "starting munge"
    if [[ $(ps -p 1 -o comm= 2>/dev/null) == systemd ]]; then
        systemctl start munge || true
    elif command -v service >/dev/null; then
        service munge start >/dev/null 2>&1 || true
    fi
    if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then  # no service manager that did it: by hand
        mkdir -p /run/munge && chown munge: /run/munge
        runuser -u munge -- /usr/sbin/munged 2>/dev/null || true
    fi
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 ||
        fail "munge does not answer (munge -n | unmunge); see /var/log/munge/munged.log"
    say "munge answers"
}

write_config() {  # sets CHANGED=1 when the configuration differs from the one in place
    mkdir -p "$DIR"/{state,spool,log}
    local hardware cpus memory
    hardware=$(slurmd -C | head -n 1)  # NodeName=... CPUs=... RealMemory=...: what slurmd finds
    cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$hardware")
    memory=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hardware")
    [[ -n $cpus && -n $memory ]] || fail "slurmd -C did not describe this machine: $hardware"
    cat >"$CONF.new" <<EOF
# A single-node Slurm on $NODE, written by tools/local-slurm.sh (samat). Not for a shared cluster.
ClusterName=samat-local
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
# no cgroups, no systemd: processes tracked through /proc, tasks not bound to cores
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
# ended jobs stay known for an hour (squeue --states=all): there is no accounting to ask after that
MinJobAge=3600
# a cancelled job's processes get SIGKILL 5 s after SIGTERM (default 30)
KillWait=5
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=local Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    if [[ -f $CONF ]] && cmp -s "$CONF" "$CONF.new"; then
        rm "$CONF.new"
        CHANGED=0
    else
        mv "$CONF.new" "$CONF"
        CHANGED=1
        say "wrote $CONF ($NODE: $cpus CPUs, $memory MB)"
    fi
}

stop_daemons() {
    local name
    for name in slurmd slurmctld; do
        if alive "$DIR/$name.pid"; then
            say "stopping $name (pid $(cat "$DIR/$name.pid"))"
            kill "$(cat "$DIR/$name.pid")"
            for _ in $(seq 50); do alive "$DIR/$name.pid" || break; sleep 0.2; done
            alive "$DIR/$name.pid" && fail "$name (pid $(cat "$DIR/$name.pid")) did not stop"
        fi
    done
    return 0
}

wait_for() {  # wait_for SECONDS WHAT COMMAND...: until COMMAND succeeds
    local seconds=$1 what=$2
    shift 2
    for _ in $(seq $((seconds * 5))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    return 1
}

controller_up() { scontrol ping 2>/dev/null | grep -q "UP"; }
node_ready() { sinfo -h -n "$NODE" -o %T 2>/dev/null | grep -qE "^(idle|mixed|allocated|completing)"; }

start_daemons() {
    export SLURM_CONF=$CONF
    if alive "$DIR/slurmctld.pid"; then
        say "slurmctld runs (pid $(cat "$DIR/slurmctld.pid"))"
    else
        say "starting slurmctld (log $DIR/log/slurmctld.log)"
        slurmctld -f "$CONF" || fail "slurmctld did not start: $(last_errors "$DIR/log/slurmctld.log")"
    fi
    wait_for 30 "slurmctld" controller_up ||
        fail "slurmctld does not answer on port $PORT: $(last_errors "$DIR/log/slurmctld.log")"
    if alive "$DIR/slurmd.pid"; then
        say "slurmd runs (pid $(cat "$DIR/slurmd.pid"))"
    else
        say "starting slurmd as node $NODE (log $DIR/log/slurmd.log)"
        slurmd -f "$CONF" -N "$NODE" || fail "slurmd did not start: $(last_errors "$DIR/log/slurmd.log")"
    fi
    if ! wait_for 30 "node" node_ready; then
        scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true  # down after an earlier stop
        wait_for 30 "node" node_ready || fail "node $NODE is not ready ($(sinfo -h -n "$NODE" -o '%T %E')): \
$(last_errors "$DIR/log/slurmd.log")"
    fi
    say "node $NODE is $(sinfo -h -n "$NODE" -o %T)"
}

test_job() {
    local out
    out=$(timeout 120 srun --quiet -N 1 -n 1 -t 1 hostname 2>&1) ||
        fail "a test job (srun hostname) failed: $out; $(last_errors "$DIR/log/slurmd.log")"
    say "a test job ran on $out"
}

INSTALL=1
if [[ ${2:-} == --no-install ]]; then INSTALL=0; elif [[ -n ${2:-} ]]; then fail "unknown option '$2'"; fi
case ${1:-start} in
    start)
        need_root
        install
        start_munge
        write_config
        if ((CHANGED)); then stop_daemons; fi
        start_daemons
        test_job
        say "ready; submit from a shell with: export SLURM_CONF=$CONF"
        ;;
    stop)
        need_root
        stop_daemons
        say "stopped (munge keeps running; $DIR is kept)"
        ;;
    status)
        export SLURM_CONF=$CONF
        for name in slurmctld slurmd; do
            if alive "$DIR/$name.pid"; then
                say "$name runs (pid $(cat "$DIR/$name.pid"))"
            else
                say "$name is stopped"
            fi
        done
        if controller_up; then sinfo; squeue --states=all; fi
        ;;
    *)
        fail "unknown command '$1': start, status or stop"
        ;;
esac
