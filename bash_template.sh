#!/bin/bash
# SLURM batch script: train -> test -> report one task config, surviving the time limit.
#
#   sbatch bash_template.sh configs/energy.yaml                  # the documented way
#   sbatch --time=08:00:00 bash_template.sh configs/type.yaml --set TrainCTLearnModel.n_epochs=50
#   RUN_NAME=lr3 sbatch bash_template.sh configs/energy.yaml     # choose the run name
#
# Before the time limit SLURM sends USR1 (--signal below); training stops
# after the current batch (the finished epochs are saved every epoch) and the
# job requeues itself; the requeued job resumes from the last finished epoch.
# MAX_RESTARTS bounds the requeues so a broken job cannot loop forever.
#
# Environment: VENV (default .venv) or CONDA_ENV (a conda env name, e.g. ctlearn);
# RUN_NAME (default slurm-<job id>[-<array index>]); MAX_RESTARTS (default 10); STEP_RESERVE
# (default 120: seconds a test or report step needs; after the warning a step starts only if they are left);
# SWEEP_FILE (set by scripts/submit_sweep.py: one line of --set overrides per array element).
#
# Several tasks (sbatch --ntasks=N, or --nodes=N --ntasks-per-node=1): training runs
# under srun as one run over all tasks (TensorFlow's MultiWorkerMirroredStrategy,
# the cluster from SlurmClusterResolver; docs/slurm.md#several-tasks-and-nodes);
# testing and the report run once.
#
#SBATCH --job-name=ctlearn
#SBATCH --time=04:00:00
#SBATCH --cpus-per-task=2
#SBATCH --mem=16G
##SBATCH --gres=gpu:1                 # uncomment on a GPU partition
#SBATCH --output=slurm-%x-%j.out
#SBATCH --open-mode=append             # a requeued job appends to the same log
#SBATCH --signal=B:USR1@120            # USR1 to this script 120 s before the time limit
#SBATCH --requeue

set -uo pipefail

CONFIG=${1:-${CONFIG:-}}
if [ -z "$CONFIG" ]; then
  echo "usage: sbatch bash_template.sh configs/<task>.yaml [train options]" >&2
  exit 2
fi
shift
cd "${SLURM_SUBMIT_DIR:-.}"

if [ -n "${CONDA_ENV:-}" ]; then
  # shellcheck disable=SC1091
  source "$(conda info --base)/etc/profile.d/conda.sh" && conda activate "$CONDA_ENV"
else
  # shellcheck disable=SC1091
  source "${VENV:-.venv}/bin/activate"
fi

job=${SLURM_ARRAY_JOB_ID:-${SLURM_JOB_ID:-local}}
if [ -n "${RUN_NAME_PREFIX:-}" ] && [ -n "${SLURM_ARRAY_TASK_ID:-}" ]; then
  RUN_NAME=${RUN_NAME:-${RUN_NAME_PREFIX}-${SLURM_ARRAY_TASK_ID}}
fi
RUN_NAME=${RUN_NAME:-slurm-${job}${SLURM_ARRAY_TASK_ID:+-$SLURM_ARRAY_TASK_ID}}
MAX_RESTARTS=${MAX_RESTARTS:-10}
# seconds the test or report step needs at most: after the warning, a step starts only if that much is left
STEP_RESERVE=${STEP_RESERVE:-120}
restarts=${SLURM_RESTART_COUNT:-0}
overrides=()
if [ -n "${SWEEP_FILE:-}" ] && [ -n "${SLURM_ARRAY_TASK_ID:-}" ]; then
  line=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" "$SWEEP_FILE")
  IFS=';' read -r -a items <<< "$line"
  for item in "${items[@]}"; do
    item=$(echo "$item" | sed 's/^ *//; s/ *$//')
    [ -n "$item" ] && overrides+=(--set "$item")
  done
fi
echo "$(date -Is) job ${SLURM_JOB_ID:-?} restart ${restarts}/${MAX_RESTARTS}: ${CONFIG} run ${RUN_NAME} ${overrides[*]:-}"

child=0
forward=0  # only training is told to stop early; testing and reporting are short and finish
warned=0
on_signal() {
  warned=1
  echo "$(date -Is) time limit near"
  if [ "$forward" -eq 1 ] && [ "$child" -ne 0 ]; then
    echo "$(date -Is) training stops when what is left does not fit before the limit"
    kill -USR1 "$child" 2>/dev/null
  fi
}
trap on_signal USR1
# TERM is scancel (or the hard limit, if the warning never came): stop, do not requeue
terminated=0
on_term() {
  terminated=1
  echo "$(date -Is) terminated: not requeuing (resume with scripts/rerun/resume.py or resubmit)"
  [ "$child" -ne 0 ] && kill -TERM "$child" 2>/dev/null
}
trap on_term TERM

# run a step in the background so the trap can fire while we wait for it
step() {
  "$@" &
  child=$!
  wait "$child"
  local status=$?
  while kill -0 "$child" 2>/dev/null; do wait "$child"; status=$?; done
  child=0
  return "$status"
}

# seconds before the time limit, from squeue's %L ([days-][hours:]minutes:seconds; UNLIMITED); empty if unknown
seconds_left() {
  local left
  left=$(squeue -h -j "${SLURM_JOB_ID}" -o %L 2>/dev/null)
  case "$left" in
    *[0-9]*) echo "$left" | awk -F'[-:]' '{s=$NF; if(NF>1)s+=$(NF-1)*60; if(NF>2)s+=$(NF-2)*3600; if(NF>3)s+=$(NF-3)*86400; print s}' ;;
    UNLIMITED) echo 999999 ;;
    *) echo "" ;;
  esac
}

requeue() {
  if [ "$restarts" -ge "$MAX_RESTARTS" ]; then
    echo "$(date -Is) stopped ${restarts} times already (MAX_RESTARTS=${MAX_RESTARTS}): not requeuing;" \
         "resume by hand with scripts/rerun/resume.py or resubmit" >&2
    exit 1
  fi
  echo "$(date -Is) $1: requeuing job ${SLURM_JOB_ID} (finished epochs and outputs are kept)"
  scontrol requeue "${SLURM_JOB_ID}"
  exit 0
}

# exit code of a step -> continue, requeue (stopped by the time limit) or fail
after() {
  local status=$1 what=$2
  if [ "$terminated" -eq 1 ]; then exit 143; fi
  # 75: stopped by the warning signal after saving; 138/143: killed by USR1/TERM before it could
  if [ "$status" -eq 75 ] || [ "$status" -eq 138 ] || [ "$status" -eq 143 ]; then
    requeue "${what} stopped by the time limit"
  elif [ "$status" -ne 0 ]; then
    if [ "$status" -eq 2 ]; then
      echo "$(date -Is) ${what} failed with exit code 2 (a config or input error: not retried)" >&2
    else
      echo "$(date -Is) ${what} failed with exit code ${status}: not retried; once the cause is fixed, submit again" \
        "with RUN_NAME=${RUN_NAME} (the run resumes from its last finished epoch)" >&2
    fi
    exit "$status"
  fi
  # go on only if the next step fits in the time really left: SLURM checks for due warning signals only about
  # once a minute, so the warning may come late or never before the limit (and it may come early); when squeue
  # cannot tell, a warning received means no time is left
  if [ "${3:-}" != last ]; then
    local left
    left=$(seconds_left)
    if { [ -n "$left" ] && [ "$left" -lt "$STEP_RESERVE" ]; } || { [ -z "$left" ] && [ "$warned" -eq 1 ]; }; then
      requeue "no time left after ${what} (${left:-unknown} s, STEP_RESERVE=${STEP_RESERVE})"
    fi
  fi
  return 0
}

# one task: the training process itself; several: srun starts one per task; a task that dies is noticed by the
# others through the coordination service's heartbeat, which end with a message naming it (srun's -K would kill them
# first, without a word)
launcher=()
if [ "${SLURM_NTASKS:-1}" -gt 1 ]; then
  launcher=(srun --kill-on-bad-exit=0 --ntasks="$SLURM_NTASKS")
  echo "$(date -Is) training over ${SLURM_NTASKS} tasks (${SLURM_JOB_NUM_NODES:-1} nodes)"
fi
# a requeued job starts here again: training resumes (or is skipped when finished)
forward=1
step "${launcher[@]}" python scripts/train_model.py --config "$CONFIG" --run-name "$RUN_NAME" --auto-resume "${overrides[@]}" "$@"
status=$?
forward=0
after "$status" training
# outputs written atomically; a requeued job does not redo what a previous attempt finished
step python scripts/test_model.py --config "$CONFIG" --run "$RUN_NAME" --skip-existing "${overrides[@]}"
after $? testing
step python scripts/generate_report.py --config "$CONFIG" --run "$RUN_NAME" --skip-existing "${overrides[@]}"
after $? "the report" last
echo "$(date -Is) done: run ${RUN_NAME}"
