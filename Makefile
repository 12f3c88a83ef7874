# Set-up and everyday tasks. Every target installs what it needs, so a fresh machine
# needs only `make run` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SPECS := $(shell find specs -name '*.yaml' | sort)

.PHONY: install dev graphviz run docs test lint schema generated bench timm-suite sr-demo clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e .
	touch $@

dev: $(VENV)/.installed-dev

# timm comes without its dependency torchvision, whose wheel cannot be imported beside the CPU
# torch here (it links CUDA libraries); the tests put a stand-in for it where it cannot be imported.
# The rest of the `timm` extra (huggingface-hub; PyYAML and safetensors are ours too) is installed.
$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[dev,train,export,plot,tensorboard]' 'huggingface-hub>=0.25'
	$(BIN)/python -m pip install --quiet --no-deps 'timm>=1.0.31,<2'
	touch $@

# Debian's graphviz provides `dot` for SVG/PNG output; installed when missing and we are root.
graphviz:
	@command -v dot >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null) \
	      || echo "warning: could not install graphviz; svg/png rendering is unavailable"; \
	  else echo "note: graphviz's 'dot' is missing; install it for svg/png rendering"; fi; }

# The README's block and schedule pictures: SVG when graphviz's `dot` is there, else DOT text.
K36 := specs/cifar10/cliquenet-k36-t12.yaml
RENDER_FORMAT = $(if $(shell command -v dot),svg,dot)

run: install graphviz
	$(BIN)/cliquegen validate $(SPECS)
	$(BIN)/cliquegen build $(SPECS)
	$(BIN)/cliquegen list
	mkdir -p build/render
	$(BIN)/cliquegen render $(K36) --view block -o build/render/cliquenet-k36-t12-block.$(RENDER_FORMAT)
	$(BIN)/cliquegen render $(K36) --view schedule -o build/render/cliquenet-k36-t12-schedule.$(RENDER_FORMAT)

# The README's pictures in docs/ (graphviz's `dot` draws them).
docs: install graphviz
	$(BIN)/cliquegen render $(K36) --view block -o docs/cliquenet-k36-t12-block.svg
	$(BIN)/cliquegen render $(K36) --view schedule -o docs/cliquenet-k36-t12-schedule.svg

# One pytest worker per core (each runs torch on one thread; tests/conftest.py).
test: dev graphviz
	$(BIN)/python -m pytest -q -n auto

lint: dev
	$(BIN)/ruff check cliquegen tests
	$(BIN)/ruff format --check cliquegen tests

# Generated models against the authors'-style baseline (a few minutes on 2 cores): BENCHMARKS.md
bench: install
	$(BIN)/python -m benchmarks.run

# The README's super-resolution demo (about 10 minutes on 2 cores): real photographs that
# scikit-learn and scikit-image ship, srcliquenet-x2-tiny trained with the sr recipe, scored
# against bicubic on the held-out ones, and their LR versions upscaled beside bicubic's.
SR_DEMO ?= build/sr-demo
SR_TINY := specs/sr/srcliquenet-x2-tiny.yaml

sr-demo: dev
	$(BIN)/python -m cliquegen.data.samples $(SR_DEMO)/photos --scale 2
	$(BIN)/cliquegen train $(SR_TINY) --data folder:$(SR_DEMO)/photos --recipe sr --epochs 5 --out $(SR_DEMO)/run
	$(BIN)/cliquegen eval $(SR_TINY) --weights $(SR_DEMO)/run/best.pt --data folder:$(SR_DEMO)/photos
	$(BIN)/cliquegen upscale $(SR_TINY) --weights $(SR_DEMO)/run/best.pt $(SR_DEMO)/photos/x2/lr/*.png \
	  -o $(SR_DEMO)/upscaled --compare $(SR_DEMO)/compare.png --hr $(SR_DEMO)/photos/x2/hr

# timm's own model tests (tests/test_models.py of its source distribution, run unmodified with
# that release's timm) on every cliquegen model registered with timm; slow, so not in `make test`.
# TIMM_SUITE_MODELS="cliquenet_digits cliquenet_k36_t12" (fnmatch patterns) runs some models only,
# TIMM_SUITE_EMIT=source the models of generated source; PYTEST_ARGS go to pytest (-k, -x, ...).
TIMM_VERSION := 1.0.31
TIMM_SDIST := build/timm-sdist/timm-$(TIMM_VERSION)
PYTEST_ARGS ?= -q -rfEs

$(TIMM_SDIST)/tests/test_models.py: | $(VENV)/.installed
	mkdir -p build/timm-sdist
	$(BIN)/python -m pip download --quiet timm==$(TIMM_VERSION) --no-binary :all: --no-deps -d build/timm-sdist
	tar -xzf build/timm-sdist/timm-$(TIMM_VERSION).tar.gz -C build/timm-sdist
	test -f $@ && touch $@

timm-suite: dev $(TIMM_SDIST)/tests/test_models.py
	$(BIN)/python tests/timm_suite.py $(TIMM_SDIST) $(PYTEST_ARGS)

schema: install
	$(BIN)/cliquegen schema > cliquegen.schema.json

# The checked-in modules of the shipped specs (tests/test_source.py compares against them).
generated: install
	$(BIN)/cliquegen build $(SPECS) -o generated

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
