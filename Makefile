# The whole set-up on a fresh machine with python3: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PORT   ?= 8501
# Loopback only by default; ADDRESS=0.0.0.0 serves the dashboard to a team's network.
ADDRESS ?= 127.0.0.1

.PHONY: run test bench lint clean

$(VENV)/.runtime: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt $(VENV)/.runtime
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

run: $(VENV)/.runtime
	$(PY) -m streamlit run app.py --server.port $(PORT) --server.address $(ADDRESS)

lint: $(VENV)/.dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

test: lint
	$(PY) -m pytest -q

bench: $(VENV)/.runtime
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Refresh the README's images (docs/screenshots/*.png) with the real-browser test.
.PHONY: screenshots
screenshots: $(VENV)/.dev
	QUORUM_SCREENSHOT_DIR=docs/screenshots $(PY) -m pytest -q -m e2e tests/ui/test_e2e_browser.py
	QUORUM_SCREENSHOT_DIR=docs/screenshots $(PY) -m pytest -q -m e2e tests/ui/test_e2e_story.py -k wall_view
