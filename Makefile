# Thin wrapper over CMake (redis-style root Makefile). See README.md.
BUILD ?= build
GEN := $(shell command -v ninja >/dev/null 2>&1 && echo "-G Ninja")
DATA ?= $(HOME)/.local/share/ciel

.PHONY: all deps build up down check test asan fuzz bench format clean

all: build

deps:
	@bash scripts/deps.sh

$(BUILD)/build.ninja $(BUILD)/Makefile:
	cmake -S . -B $(BUILD) $(GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD)

# The small test model, served as the public model "stories" when it is there.
MODEL ?= $(wildcard ../shared/models/stories260K/stories260k-f32.v3.gguf)
MODEL_NAME ?= stories

# An all-in-one region on this machine, embedded store, three zones (and the model).
up: build
	$(BUILD)/ciel up --data $(DATA) $(if $(MODEL),--model $(MODEL):$(MODEL_NAME))

down:
	$(BUILD)/ciel down --data $(DATA)

# The whole suite: unit + integration, again under ASan+UBSan, then bounded fuzz runs.
check: deps
	@bash scripts/check.sh

test: build
	cd $(BUILD) && ctest --output-on-failure

bench: build
	@bash scripts/bench.sh
	@bash bench/instance-start.sh
	@BUILD=$(BUILD) bash bench/qsim.sh
	@BUILD=$(BUILD) bash bench/llm.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-fuzz
