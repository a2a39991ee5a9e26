# Two commands: `make run` and `make test`. Both create .venv on first use.
#
# torch + torchvision from PyPI (a CUDA build on x86-64 Linux, which also runs on CPU). For
# another build, pick versions and/or an index, e.g. a CPU-only one to save disk:
#   make run TORCH="torch==2.14.1 torchvision==0.29.1" TORCH_INDEX_URL=<a wheel index>
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
TORCH ?= torch==2.14.1 torchvision==0.29.1
TORCH_INDEX_URL ?=
ARGS ?=
PYTEST_ARGS ?=
# pytest workers (pytest-xdist), each taking whole test files, slow ones first (conftest.py)
PYTEST_WORKERS ?= 2

BIN := $(VENV)/bin
STAMP := $(VENV)/.sennflow-installed

.PHONY: run test lint bench stack stack-down clean-venv

# uv installs in about 50 s what pip installs in about 3 minutes (same versions). It compiles
# the bytecode as pip does: with PYTHONDONTWRITEBYTECODE set, every process would otherwise
# compile what it imports (measured: the test suite took 40 minutes instead of 21). uv does not
# read pip's configuration (an index mirror, a certificate set only there): where uv fails,
# pip installs the same.
define install
$(BIN)/uv pip install --quiet --no-cache --compile-bytecode --python $(BIN)/python $(1) || $(BIN)/python -m pip install --quiet --no-cache-dir $(1)
endef

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-cache-dir "uv==0.13.*"
	$(call install,$(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)) $(TORCH))
	$(call install,-e ".[dev]")
# Prefect's local database, created now rather than by the first run's temporary server
	$(BIN)/prefect server database upgrade -y > /dev/null
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/sennflow run $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

stack: $(STAMP)
	$(BIN)/sennflow stack up

stack-down: $(STAMP)
	$(BIN)/sennflow stack down

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python bench/train_overhead.py
	$(BIN)/python bench/ingest_throughput.py
	$(BIN)/python bench/image_ingest.py
	$(BIN)/python bench/push_cost.py
	$(BIN)/python bench/stn_vs_grid.py
	$(BIN)/python bench/asha_vs_random.py
	$(BIN)/python bench/explain_throughput.py
	$(BIN)/python bench/explain_cost.py
	$(BIN)/python bench/federated_rounds.py
	$(BIN)/python bench/orchestration_overhead.py

clean-venv:
	rm -rf $(VENV)
