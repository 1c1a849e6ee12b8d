#!/usr/bin/env bash
# Writes tests/data/gamma_test_lst_v6.dl1.h5: DL1 of data model v6 as the productions made with ctapipe 0.23
# wrote it (the tests check that such files still train, predict and give IRFs). It is committed (400 kB)
# because making it needs the previous generation of ctapipe: a venv of its own, about 3 minutes.
#   bash scripts/ci/make_v6_fixture.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
python=$(bash scripts/setup/find_python.sh)
venv=$(mktemp -d)/ctapipe-0.23
trap 'rm -rf "$(dirname "$venv")"' EXIT
"$python" -m venv "$venv"
"$venv/bin/pip" install -q "ctapipe==0.23.2" "eventio==1.16.1"
# the real simtel file of the eventio sdist on PyPI (the same the tests fetch and cache), with the project's venv
simtel=$(.venv/bin/python -c "from ctlearn_mlops.resources import eventio_resource; print(eventio_resource('gamma_test.simtel.gz'))")
"$venv/bin/ctapipe-process" --input "$simtel" --output tests/data/gamma_test_lst_v6.dl1.h5 \
  --write-images --write-parameters --overwrite --log-level ERROR \
  --SimTelEventSource.focal_length_choice=EQUIVALENT \
  --EventSource.allowed_tels=1 --EventSource.allowed_tels=2 --EventSource.allowed_tels=3 --EventSource.allowed_tels=4
echo "wrote tests/data/gamma_test_lst_v6.dl1.h5"
