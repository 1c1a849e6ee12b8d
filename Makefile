# Task runner. The two commands of the README:
#   make demo   set up, make the default data, train + test all four tasks on it, IRFs of the event file, and the
#               same IRFs with the shipped reference models (models/reference/, trained on the quality production)
#   make test   set up and run the test suite
# a Python 3.12: PYTHON if given, else python3.12 / python3 on PATH, else pyenv's (scripts/setup/find_python.sh)
PYTHON ?=
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TASKS := energy type cameradirection skydirection
# the shipped reference models (models/reference/, docs/physics.md), as predict_events.py takes them
REFERENCE_RUNS := --run type=models/reference/type --run energy=models/reference/energy \
	--run geometry=models/reference/skydirection

.PHONY: setup data data-quality data-quality-protons irf-quality irf-reference irf-reference-protons reference-models \
	data-mock observation-reference demo test test-fast constraints clean-runs

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@python=$$(PYTHON="$(PYTHON)" bash scripts/setup/find_python.sh) || exit 1; \
	  echo "$$python -m venv $(VENV)"; "$$python" -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip==24.3.1
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test,mlflow]'
	touch $(STAMP)

data: setup
	$(BIN)/python scripts/data_processing/make_default_dataset.py

demo: data
	@for task in $(TASKS); do \
	  $(BIN)/python scripts/train_model.py --config configs/$$task.yaml --log-level WARN || exit $$?; \
	  $(BIN)/python scripts/test_model.py --config configs/$$task.yaml --run latest --log-level WARN || exit $$?; \
	  $(BIN)/python scripts/generate_report.py --config configs/$$task.yaml --run latest --log-level WARN || exit $$?; \
	done
	$(BIN)/python scripts/predict_events.py --run type=latest --run energy=latest --run geometry=latest \
	  --input data/default/irf --output data/dl2/demo-irf.dl2.h5 --overwrite --log-level WARN
	$(BIN)/python scripts/compute_irf.py --input data/dl2/demo-irf.dl2.h5 --name demo --overwrite --log-level WARN
	$(BIN)/python scripts/predict_events.py $(REFERENCE_RUNS) --input data/default/irf --output data/dl2/demo-reference-irf.dl2.h5 \
	  --overwrite --log-level WARN
	$(BIN)/python scripts/compute_irf.py --input data/dl2/demo-reference-irf.dl2.h5 --name demo-reference --overwrite \
	  --log-level WARN
	@echo "Runs are in models/<task>/, their reports in reports/<task>/, IRFs in reports/irf/demo/ and, with the reference models, reports/irf/demo-reference/ (open report.html)"

# the quality runs train on 4x the default showers (docs/physics.md); the IRF sample has 24x the gammas and 25x the protons of
# the default one (48,000 point-like gammas: with 12,000 the IRFs' own statistics biased a 30-min Crab's fitted index by
# ~2 sigma, docs/physics.md "The mock Crab observation").
# Protons beyond 200,000 go to data/quality/irf-protons/ (data-quality-protons), data/quality/irf/ stays as it is.
IRF_PROTONS ?= 200000
IRF_GAMMAS ?= 48000
data-quality: setup
	$(BIN)/python scripts/data_processing/make_default_dataset.py --output-dir data/quality --n-gamma 12000 --n-proton 32000 --n-irf-gamma $(IRF_GAMMAS) --n-irf-proton $(IRF_PROTONS) --n-flat-gamma 3000 --seed 2

# the 5x proton sample (every bin of the sensitivity counted, docs/physics.md): 800,000 protons more in
# data/quality/irf-protons/ (~45 min on 2 cores, ~11 GB)
data-quality-protons: setup
	$(MAKE) data-quality IRF_PROTONS=1000000

# quality budget of one task (docs/physics.md): make quality-cameradirection
quality-%: data-quality
	$(BIN)/python scripts/train_model.py --config configs/$*_quality.yaml --overwrite --log-level WARN
	$(BIN)/python scripts/test_model.py --config configs/$*_quality.yaml --run quality --overwrite --log-level WARN
	$(BIN)/python scripts/generate_report.py --config configs/$*_quality.yaml --run quality --overwrite --log-level WARN

# the reference models (models/reference/): the quality runs of type, energy and skydirection, as shipped
reference-models: setup
	$(BIN)/python -m ctlearn_mlops.tools.reference

# the IRFs of the shipped reference models on the seeded quality production, checked against docs/results/quality-irf/
irf-reference: data-quality
	$(BIN)/python scripts/predict_events.py $(REFERENCE_RUNS) --input data/quality/irf --output data/dl2/reference-irf.dl2.h5 \
	  --overwrite --log-level WARN
	$(BIN)/python scripts/compute_irf.py --input data/dl2/reference-irf.dl2.h5 --name reference --fov-offset-max 2.0 \
	  --overwrite --log-level WARN
	$(BIN)/python scripts/compare_models.py --irf reports/irf/reference --irf docs/results/quality-irf --gate \
	  --gate-tolerance 0.01 --name reference-check --overwrite --log-level WARN
	touch $(REFERENCE_IRFS)

# the reference IRFs an observation (and irf-reference-protons) takes: made by irf-reference when missing, older than
# the reference models or the IRF sample's directory, or not through the gate (the stamp is written in the IRFs'
# directory once the gate passed; compute_irf.py replaces the directory); make irf-reference remakes them at any time
REFERENCE_IRFS := reports/irf/reference/gate-passed
$(REFERENCE_IRFS): $(wildcard models/reference/*/*) $(wildcard data/quality/irf) | data-quality
	$(MAKE) irf-reference

data/dl2/reference-irf.dl2.h5: | data-quality
	$(MAKE) irf-reference

# the same with the 5x proton sample: the event DL2 file of irf/ (irf-reference's) and those of irf-protons/ (800,000
# protons in four parts of 200 files, obs_id 32200-32999: one call over all of them needs more than the 23 GB of the
# machine it was measured on; ~1 hour on 2 cores) taken together, checked against docs/results/quality-irf-protons/
PROTON_PARTS := 23 45 67 89
irf-reference-protons: data-quality-protons $(REFERENCE_IRFS) data/dl2/reference-irf.dl2.h5
	@for part in $(PROTON_PARTS); do \
	  echo "predicting data/quality/irf-protons/proton_diffuse_irf_obs32[$$part]*"; \
	  $(BIN)/python scripts/predict_events.py $(REFERENCE_RUNS) \
	    --input "data/quality/irf-protons/proton_diffuse_irf_obs32[$$part]??.dl1.h5" \
	    --output data/dl2/reference-irf-protons-$$part.dl2.h5 --overwrite --log-level WARN || exit $$?; \
	done
	$(BIN)/python scripts/compute_irf.py --input data/dl2/reference-irf.dl2.h5 \
	  $(foreach part,$(PROTON_PARTS),--input data/dl2/reference-irf-protons-$(part).dl2.h5) --name reference-protons \
	  --fov-offset-max 2.0 --overwrite --log-level WARN
	$(BIN)/python scripts/compare_models.py --irf reports/irf/reference-protons --irf docs/results/quality-irf-protons \
	  --gate --gate-tolerance 0.01 --name reference-protons-check --overwrite --log-level WARN

# IRFs and sensitivity of the quality runs (docs/physics.md): after make quality-type quality-energy quality-skydirection
irf-quality: data-quality
	$(BIN)/python scripts/predict_events.py --run type=quality --run energy=quality --run geometry=skydirection/quality \
	  --input data/quality/irf --output data/dl2/quality-irf.dl2.h5 --overwrite --log-level WARN
	$(BIN)/python scripts/compute_irf.py --input data/dl2/quality-irf.dl2.h5 --name quality --fov-offset-max 2.0 \
	  --overwrite --log-level WARN

# a mock Crab observation (docs/observation.md): four 7.5-minute wobble runs, protons at 1 % of their rate, ~6 min;
# MOCK_SEED=N: another realization, in data/mock_crab_seedN (its DL2, DL3 and report named mock-crab-seedN-reference)
MOCK_SEED ?= 1
MOCK_SUFFIX := $(if $(filter 1,$(MOCK_SEED)),,-seed$(MOCK_SEED))
MOCK_DIR := data/mock_crab$(subst -,_,$(MOCK_SUFFIX))
MOCK_NAME := mock-crab$(MOCK_SUFFIX)-reference
data-mock: setup
	$(BIN)/python scripts/data_processing/make_mock_observation.py --output-dir $(MOCK_DIR) --seed $(MOCK_SEED) \
	  --log-level WARN

# the observation path with the reference models and their IRFs: event DL2, DL3 and gammapy's analysis
observation-reference: data-mock $(REFERENCE_IRFS)
	$(BIN)/python scripts/predict_events.py $(REFERENCE_RUNS) --input $(MOCK_DIR)/dl1 --output data/dl2/$(MOCK_NAME).dl2.h5 \
	  --overwrite --log-level WARN
	$(BIN)/python scripts/create_dl3.py --input data/dl2/$(MOCK_NAME).dl2.h5 --irf reports/irf/reference \
	  --output-dir data/dl3/$(MOCK_NAME) --overwrite --log-level WARN
	$(BIN)/python scripts/analyse_dl3.py --input data/dl3/$(MOCK_NAME) --background-fraction 0.01 \
	  --mock $(MOCK_DIR) --overwrite --log-level WARN

# a run that collects no test fails (pytest's exit 5), as any other failure
test: setup
	@bash scripts/ci/test_prerequisites.sh
	$(BIN)/ruff check src tests scripts benchmarks
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/ruff check src tests scripts benchmarks
	$(BIN)/python -m pytest -m "not slow and not slurm"

constraints: setup
	{ echo "# Exact versions of the whole environment (pip install -c constraints.txt -e .[test,mlflow])."; \
	  echo "# Regenerate after changing dependencies: make constraints"; \
	  $(BIN)/pip freeze --exclude-editable; } > constraints.txt
