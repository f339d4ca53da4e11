# crescent's front door. The two commands a user needs:
#   make run    install what is missing (Debian packages), build, serve ./functions on 127.0.0.1:8080
#   make test   the same set-up plus the test-only packages (chromium, prometheus), then the whole suite through ctest
# Also: make build, make test-asan (ASan + UBSan build in build-asan/), make clean.
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)
LISTEN     ?= 127.0.0.1:8080
CTEST_ARGS ?=

.PHONY: all deps test-deps build run test test-asan bench clean

all: build

deps:
	@sh tools/deps.sh

# What only the tests need (a real browser for test_cors_browser): not for make run.
test-deps:
	@sh tools/deps.sh test

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

run: build
	./$(BUILD)/crescent serve --functions ./functions --listen $(LISTEN)

# The test-only packages are installed in the recipe, after build's deps (never at the same time: apt's lock).
test: build
	@sh tools/deps.sh test
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS) $(CTEST_ARGS)

test-asan: test-deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DCRESCENT_SANITIZE=ON \
		-DCRESCENT_LUAJIT_DIR=$(CURDIR)/$(BUILD)/luajit >/dev/null
	@cmake --build $(ASAN_BUILD) -j$(JOBS)
	cd $(ASAN_BUILD) && ctest --output-on-failure -j$(JOBS) $(CTEST_ARGS)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
