# shoji — thin front over CMake. The real build is CMakeLists.txt.
#   make run    deps + build + local CA + agent on 127.0.0.1:3128
#   make test   deps + build (release and ASan/UBSan) + unit, integration, fuzz smoke
#   make bench  benchmarks (see docs/PERFORMANCE.md)
#   make fuzz   longer fuzzing of every parser (FUZZ_SECONDS per target)
SHELL := /bin/bash
JOBS ?= $(shell nproc)
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
STATE ?= state
LISTEN ?= 127.0.0.1:3128
FUZZ_SECONDS ?= 300
FUZZ_SMOKE_SECONDS ?= 5
PYTEST ?= /usr/bin/python3 -m pytest

.PHONY: all deps build build-asan build-fuzz run test unit integration fuzz-smoke fuzz bench clean

all: build

deps:
	@scripts/deps.sh test

$(BUILD)/Makefile:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: $(BUILD)/Makefile
	cmake --build $(BUILD) -j $(JOBS)

$(ASAN_BUILD)/Makefile:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DSHOJI_SANITIZE=ON

build-asan: $(ASAN_BUILD)/Makefile
	cmake --build $(ASAN_BUILD) -j $(JOBS)

$(FUZZ_BUILD)/Makefile:
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Debug -DSHOJI_FUZZ=ON

build-fuzz: $(FUZZ_BUILD)/Makefile
	cmake --build $(FUZZ_BUILD) -j $(JOBS)

run:
	@scripts/deps.sh build
	@$(MAKE) --no-print-directory $(BUILD)/Makefile
	cmake --build $(BUILD) -j $(JOBS) --target shoji
	@scripts/run-agent.sh $(BUILD)/shoji $(STATE) $(LISTEN)

test:
	@scripts/deps.sh test
	@$(MAKE) --no-print-directory build build-asan build-fuzz
	@scripts/test.sh $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD) $(FUZZ_SMOKE_SECONDS)

unit: build build-asan
	cd $(BUILD) && ctest --output-on-failure
	cd $(ASAN_BUILD) && ctest --output-on-failure

integration: build-asan
	SHOJI_BIN=$(abspath $(ASAN_BUILD))/shoji SHOJI_SERVER_BIN=$(abspath $(ASAN_BUILD))/shoji-server $(PYTEST) -q tests/integration

fuzz-smoke: build-fuzz
	scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_SMOKE_SECONDS)

fuzz: build-fuzz
	scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

bench:
	@scripts/deps.sh bench
	@$(MAKE) --no-print-directory build
	bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
