#!/usr/bin/env bash
# System tools the test suite uses for real: headless Chromium (HTML reports)
# and a one-node SLURM cluster (batch jobs). As root they are installed from
# Debian's packages when missing and SLURM is started; otherwise the tests that
# need them are skipped (and fail under CI=true).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ "$(id -u)" != 0 ]; then
  command -v chromium >/dev/null || echo "note: no chromium: the browser test will be skipped"
  sinfo -h >/dev/null 2>&1 || echo "note: no SLURM: the SLURM tests will be skipped"
  exit 0
fi
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v slurmctld >/dev/null || missing+=(slurm-wlm)
command -v munged >/dev/null || missing+=(munge)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (Debian packages)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null || {
    echo "could not install ${missing[*]}" >&2; exit 1; }
fi
bash "$here/../slurm/start_local_cluster.sh"
