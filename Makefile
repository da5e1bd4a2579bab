# strata build. `make` builds build/strata-server; `make run` and `make test` are the
# README's two commands and install what is missing (scripts/install-deps.sh).

CC        ?= cc
PYTHON    := /usr/bin/python3
BUILD     := build
ASAN      := $(BUILD)/asan
TSAN      := $(BUILD)/tsan
FAULT     := $(BUILD)/fault
FUZZ      := $(BUILD)/fuzz

WARNINGS  := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
             -Wformat=2 -Wno-format-nonliteral -Wvla
# Lua 5.1, the version Redis embeds, for EVAL (src/proto/resp/resp_scripting.c), with the
# cjson and bit libraries Redis gives scripts.
LUA_CFLAGS := $(shell pkg-config --cflags lua5.1 lua5.1-cjson lua5.1-bitop)
LUA_LIBS   := $(shell pkg-config --libs lua5.1 lua5.1-cjson lua5.1-bitop)
COMMON    := -std=c11 -D_GNU_SOURCE -pthread -Isrc -Iinclude $(LUA_CFLAGS) -g -MMD -MP $(WARNINGS)
CFLAGS_RELEASE := $(COMMON) -O2
# The sanitizer builds also test the rules that comments state (src/base/checks.h).
CFLAGS_ASAN    := $(COMMON) -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
                  -fno-sanitize-recover=undefined -DSTRATA_CHECKS
CFLAGS_TSAN    := $(COMMON) -O1 -fno-omit-frame-pointer -fsanitize=thread -DSTRATA_CHECKS
# The fault-injection build (src/base/fault.h): the sanitizer build with its failure
# points compiled in, and strata's own allocations sent through them.
CFLAGS_FAULT   := $(CFLAGS_ASAN) -DSTRATA_FAULT_INJECTION
FAULT_WRAP     := -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=aligned_alloc
# The libFuzzer targets (tests/fuzz/): clang, coverage-guided, with ASan and UBSan.
FUZZ_CC        := clang
CFLAGS_FUZZ    := $(COMMON) -O1 -fno-omit-frame-pointer -DSTRATA_CHECKS -DSTRATA_FUZZING \
                  -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
FUZZ_TARGETS   := fuzz_resp fuzz_native fuzz_http fuzz_s3 fuzz_s3_http
LIBS      := -pthread -lxxhash -luring -lisal -lssl -lcrypto -lsodium $(LUA_LIBS) -lm

# The status page is embedded in the binary: build/gen/status_page.c is generated from
# src/observe/status_page.html (od is in coreutils, so nothing extra is needed).
GENERATED_SOURCES := $(BUILD)/gen/status_page.c
LIBRARY_SOURCES := $(wildcard src/base/*.c src/engine/*.c src/net/*.c src/access/*.c src/proto/*/*.c src/observe/*.c) \
                   $(GENERATED_SOURCES)
SERVER_SOURCES  := $(wildcard src/server/*.c)
UNIT_SOURCES    := $(wildcard tests/unit/test_*.c)
UNIT_NAMES      := $(notdir $(basename $(UNIT_SOURCES)))

objects = $(patsubst %.c,$(1)/obj/%.o,$(2))

RELEASE_LIBRARY := $(call objects,$(BUILD),$(LIBRARY_SOURCES))
ASAN_LIBRARY    := $(call objects,$(ASAN),$(LIBRARY_SOURCES))
TSAN_LIBRARY    := $(call objects,$(TSAN),$(LIBRARY_SOURCES))
FAULT_LIBRARY   := $(call objects,$(FAULT),$(LIBRARY_SOURCES))
FUZZ_LIBRARY    := $(call objects,$(FUZZ),$(LIBRARY_SOURCES) tests/fuzz/fuzz_common.c)

.PHONY: all run test unit unit-asan unit-tsan unit-fault integration integration-asan integration-asan-fault \
        integration-tsan integration-fault fuzz fuzz-check example-check \
        $(addprefix fuzz-check-,$(FUZZ_TARGETS)) \
        format format-check \
        deps deps-build deps-test clean bench bench-earlier

all: $(BUILD)/strata-server $(BUILD)/libstrata.so $(BUILD)/libstrata.a $(BUILD)/libstrata-engine.a

# ---- libstrata: the native protocol client (client/, include/strata.h) ----

CLIENT_LIBS := -lisal -lssl -lcrypto -pthread

$(BUILD)/client/%.pic.o: client/%.c include/strata.h include/strata_protocol.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_RELEASE) -fPIC -fvisibility=default -c $< -o $@

# The soname carries the major version (libstrata.so.0); build/libstrata.so is the same
# file under its development name, which the tests load by path.
VERSION      := $(shell sed -n 's/^\#define STRATA_VERSION *"\(.*\)"/\1/p' src/base/version.h)
SONAME_MAJOR := $(firstword $(subst ., ,$(VERSION)))
SONAME       := libstrata.so.$(SONAME_MAJOR)

$(BUILD)/libstrata.so: $(BUILD)/client/strata.pic.o
	$(CC) -shared -Wl,-soname,$(SONAME) $^ -o $@ $(CLIENT_LIBS)

$(BUILD)/libstrata.a: $(BUILD)/client/strata.pic.o
	rm -f $@ && ar rcs $@ $^

# The C tests of libstrata (run against a real server by tests/integration/test_native.py):
# linked with the static library, and again with the client built under the sanitizers.
$(BUILD)/tests/test_libstrata: tests/client/test_libstrata.c $(BUILD)/libstrata.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_RELEASE) $^ -o $@ $(CLIENT_LIBS)

$(ASAN)/tests/test_libstrata: tests/client/test_libstrata.c client/strata.c include/strata.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ASAN) tests/client/test_libstrata.c client/strata.c -o $@ $(CLIENT_LIBS)

# ---- libstrata-engine: the store as a library (src/base + src/engine) ----
# For embedders (src/engine/engine.h, docs/engine.md "Embedding the engine") and for the
# unit tests, one archive per build: $(BUILD)/, $(ASAN)/, $(TSAN)/, $(FAULT)/.

BASE_SOURCES    := $(wildcard src/base/*.c)
ENGINE_SOURCES  := $(BASE_SOURCES) $(wildcard src/engine/*.c)
ENGINE_ARCHIVES := $(addsuffix /libstrata-engine.a,$(BUILD) $(ASAN) $(TSAN) $(FAULT))

$(ENGINE_ARCHIVES): %/libstrata-engine.a: $(addprefix %/obj/,$(ENGINE_SOURCES:.c=.o))
	rm -f $@ && ar rcs $@ $^

# ---- end of libstrata-engine ----

$(BUILD)/gen/status_page.c: src/observe/status_page.html
	@mkdir -p $(dir $@)
	{ echo '#include <stddef.h>'; \
	  echo 'extern const unsigned char status_page_html[];'; \
	  echo 'extern const size_t status_page_html_length;'; \
	  echo 'const unsigned char status_page_html[] = {'; \
	  od -An -v -tx1 $< | sed 's/\([0-9a-f][0-9a-f]\)/0x\1,/g'; \
	  echo '};'; \
	  echo 'const size_t status_page_html_length = sizeof(status_page_html);'; } > $@

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_RELEASE) -c $< -o $@

$(ASAN)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ASAN) -c $< -o $@

$(TSAN)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_TSAN) -c $< -o $@

$(FAULT)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_FAULT) -c $< -o $@

$(FUZZ)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CFLAGS_FUZZ) -c $< -o $@

$(FUZZ)/fuzz_%: $(FUZZ)/obj/tests/fuzz/fuzz_%.o $(FUZZ_LIBRARY)
	$(FUZZ_CC) $(CFLAGS_FUZZ) -fsanitize=fuzzer $^ -o $@ $(LIBS)

$(BUILD)/strata-server: $(RELEASE_LIBRARY) $(call objects,$(BUILD),$(SERVER_SOURCES))
	$(CC) $(CFLAGS_RELEASE) $^ -o $@ $(LIBS)

$(ASAN)/strata-server: $(ASAN_LIBRARY) $(call objects,$(ASAN),$(SERVER_SOURCES))
	$(CC) $(CFLAGS_ASAN) $^ -o $@ $(LIBS)

$(TSAN)/strata-server: $(TSAN_LIBRARY) $(call objects,$(TSAN),$(SERVER_SOURCES))
	$(CC) $(CFLAGS_TSAN) $^ -o $@ $(LIBS)

$(FAULT)/strata-server: $(FAULT_LIBRARY) $(call objects,$(FAULT),$(SERVER_SOURCES))
	$(CC) $(CFLAGS_FAULT) $^ -o $@ $(LIBS) $(FAULT_WRAP)

$(FAULT)/tests/test_faults: $(FAULT)/obj/tests/fault/test_faults.o $(FAULT)/libstrata-engine.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_FAULT) $^ -o $@ $(LIBS) $(FAULT_WRAP)

$(FAULT)/tests/test_blob_faults: $(FAULT)/obj/tests/fault/test_blob_faults.o \
                                 $(FAULT)/libstrata-engine.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_FAULT) $^ -o $@ $(LIBS) $(FAULT_WRAP)

$(FAULT)/tests/test_access_faults: $(FAULT)/obj/tests/fault/test_access_faults.o \
                                   $(FAULT)/obj/src/access/access.o $(FAULT)/libstrata-engine.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_FAULT) $^ -o $@ $(LIBS) $(FAULT_WRAP)

# ---- unit tests link only the rooms they test ----
# UNIT_ROOMS_<test> is what a unit test links for build folder $(1) (the archive takes
# only the objects the test needs); a test not listed links the whole library.
UNIT_ROOMS_test_store       = $(1)/libstrata-engine.a
UNIT_ROOMS_test_objects     = $(1)/libstrata-engine.a
UNIT_ROOMS_test_checks      = $(1)/libstrata-engine.a
UNIT_ROOMS_test_blob        = $(1)/libstrata-engine.a
UNIT_ROOMS_test_options     = $(call objects,$(1),$(BASE_SOURCES))
UNIT_ROOMS_test_metrics     = $(call objects,$(1),$(BASE_SOURCES))
# The parser receives large arguments into value blocks, which charge a store's budget:
# it needs the engine.
UNIT_ROOMS_test_resp_parser = $(call objects,$(1),src/proto/resp/resp_parser.c) \
                              $(1)/libstrata-engine.a
# The S3 signing and XML helpers are pure functions over the base room.
S3_ROOM_SOURCES             = src/proto/s3/s3_auth.c src/proto/s3/s3_xml.c $(BASE_SOURCES)
UNIT_ROOMS_test_s3_auth     = $(call objects,$(1),$(S3_ROOM_SOURCES))
UNIT_ROOMS_test_s3_xml      = $(call objects,$(1),$(S3_ROOM_SOURCES))
# The list encoding is pure functions over the base room.
UNIT_ROOMS_test_list_codec  = $(call objects,$(1),src/proto/resp/resp_list_codec.c $(BASE_SOURCES))
# The stream codec is static in resp_streams.c, which the test includes: the library
# but for that file.
UNIT_ROOMS_test_stream_codec = $(call objects,$(1),$(filter-out src/proto/resp/resp_streams.c,\
                                 $(LIBRARY_SOURCES)))
# Users and rights: the access room over the base room.
UNIT_ROOMS_test_access      = $(call objects,$(1),src/access/access.c $(BASE_SOURCES))
unit_rooms = $(if $(value UNIT_ROOMS_$(2)),$(call UNIT_ROOMS_$(2),$(1)),\
                  $(call objects,$(1),$(LIBRARY_SOURCES)))
.SECONDEXPANSION:
# ---- end of unit test rooms ----

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $$(call unit_rooms,$(BUILD),$$*)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_RELEASE) $^ -o $@ $(LIBS)

# The libmicrohttpd peer of bench/http_server_choice.sh (only built by `make bench`).
$(BUILD)/bench/http_microhttpd: $(BUILD)/obj/bench/http_microhttpd.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_RELEASE) $^ -o $@ -lmicrohttpd

# The load generator of `make bench` (bench/loadgen.c); built by `make test` too, whose
# integration tests check that it catches a wrong value.
$(BUILD)/bench/loadgen: $(BUILD)/obj/bench/loadgen.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_RELEASE) $^ -o $@ -lisal -pthread

$(BUILD)/bench/memcpy_probe: $(BUILD)/obj/bench/memcpy_probe.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_RELEASE) $^ -o $@

# The HTTP load generator of bench/s3.py (large-object GETs and PUTs, S3 and /keys/);
# built by `make test` too (tests/integration/test_s3load.py checks it catches a wrong byte).
$(BUILD)/bench/s3load: $(BUILD)/obj/bench/s3load.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_RELEASE) $^ -o $@ -pthread

$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(RELEASE_LIBRARY)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_RELEASE) $^ -o $@ $(LIBS)

$(ASAN)/tests/%: $(ASAN)/obj/tests/unit/%.o $$(call unit_rooms,$(ASAN),$$*)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ASAN) $^ -o $@ $(LIBS)

$(TSAN)/tests/%: $(TSAN)/obj/tests/unit/%.o $$(call unit_rooms,$(TSAN),$$*)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_TSAN) $^ -o $@ $(LIBS)

# ---- the README's two commands ----

run: deps-build all
	./$(BUILD)/strata-server $(ARGS)

# Everything make test runs, built first with one job per core.
TEST_PROGRAMS := all $(ASAN)/strata-server $(TSAN)/strata-server $(FAULT)/strata-server \
  $(addprefix $(BUILD)/tests/,$(UNIT_NAMES)) $(addprefix $(ASAN)/tests/,$(UNIT_NAMES)) \
  $(addprefix $(TSAN)/tests/,$(UNIT_NAMES)) $(FAULT)/tests/test_faults \
  $(FAULT)/tests/test_blob_faults $(FAULT)/tests/test_access_faults \
  $(addprefix $(FUZZ)/,$(FUZZ_TARGETS)) \
  $(BUILD)/examples/engine_embed $(BUILD)/tests/test_libstrata $(ASAN)/tests/test_libstrata \
  $(BUILD)/bench/loadgen $(BUILD)/bench/s3load
JOBS ?= $(shell nproc)

# The sanitizer suites run side by side (output kept per suite): a suite spends much of
# its time waiting on servers and clients, so two share the cores well. The ThreadSanitizer
# suite is the longer one, so the fault-injection suite follows the ASan one beside it.
test: deps-test
	$(MAKE) --no-print-directory format-check
	$(MAKE) --no-print-directory -j$(JOBS) $(TEST_PROGRAMS)
	$(MAKE) --no-print-directory unit example-check unit-asan unit-tsan unit-fault
	$(MAKE) --no-print-directory -j$(JOBS) --output-sync=target fuzz-check
	$(MAKE) --no-print-directory integration
	$(MAKE) --no-print-directory -j2 --output-sync=target integration-asan-fault integration-tsan
	@echo "make test: all passed"

# ---- tests ----

unit: $(addprefix $(BUILD)/tests/,$(UNIT_NAMES))
	@for test in $^; do echo "unit: $$test"; ./$$test || exit 1; done

unit-asan: $(addprefix $(ASAN)/tests/,$(UNIT_NAMES))
	@for test in $^; do echo "unit (asan+ubsan): $$test"; \
	  ASAN_OPTIONS=detect_leaks=1 ./$$test || exit 1; done

# The unit tests under ThreadSanitizer: any report fails the run (halt_on_error).
TSAN_OPTIONS_TEST := halt_on_error=1 second_deadlock_stack=1 history_size=4
unit-tsan: $(addprefix $(TSAN)/tests/,$(UNIT_NAMES))
	@for test in $^; do echo "unit (tsan): $$test"; \
	  TSAN_OPTIONS="$(TSAN_OPTIONS_TEST)" ./$$test || exit 1; done

# ---- the embedding example: examples/engine_embed.c, linked with libstrata-engine.a
# and system libraries only (docs/engine.md, "Embedding the engine") ----
$(BUILD)/examples/engine_embed: $(BUILD)/obj/examples/engine_embed.o $(BUILD)/libstrata-engine.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_RELEASE) $^ -o $@ $(LIBS)

example-check: $(BUILD)/examples/engine_embed
	./$(BUILD)/examples/engine_embed
# ---- end of the embedding example ----

# Each integration run ends with its 12 slowest tests (--durations), so that where make
# test's 25 minutes go stays visible.
integration: $(BUILD)/strata-server $(BUILD)/libstrata.so $(BUILD)/tests/test_libstrata \
             $(BUILD)/bench/loadgen $(BUILD)/bench/s3load
	STRATA_SERVER=$(BUILD)/strata-server $(PYTHON) -m pytest -q --durations=12 tests/integration

# The whole integration suite again against the sanitizer build; the fixtures fail a
# test if the server reports a sanitizer error or exits uncleanly.
integration-asan: $(ASAN)/strata-server $(BUILD)/libstrata.so $(ASAN)/tests/test_libstrata \
                  $(BUILD)/bench/loadgen $(BUILD)/bench/s3load
	STRATA_SERVER=$(ASAN)/strata-server STRATA_SANITIZED=1 \
	  $(PYTHON) -m pytest -q --durations=12 tests/integration

# The ASan suite, then the fault-injection one: one lane of make test's side-by-side run.
integration-asan-fault:
	$(MAKE) --no-print-directory integration-asan
	$(MAKE) --no-print-directory integration-fault

# Fault-injection sweeps over the flash tier (tests/fault/test_faults.c): each site fails
# at its Nth call for N = 1, 2, ...; nothing may crash, serve a wrong value or lose an
# acknowledged durable write.
unit-fault: $(FAULT)/tests/test_faults $(FAULT)/tests/test_blob_faults \
            $(FAULT)/tests/test_access_faults
	ASAN_OPTIONS=detect_leaks=1 ./$(FAULT)/tests/test_faults
	ASAN_OPTIONS=detect_leaks=1 ./$(FAULT)/tests/test_blob_faults
	ASAN_OPTIONS=detect_leaks=1 ./$(FAULT)/tests/test_access_faults

# Fault injection against a real server (tests/fault/test_fault_server.py): DEBUG FAULT
# and STRATA_FAULTS rules in the fault-injection build.
integration-fault: $(FAULT)/strata-server $(BUILD)/strata-server
	STRATA_SANITIZED=1 $(PYTHON) -m pytest -q tests/fault

# Fuzzing (tests/fuzz/, docs/reliability.md). `make fuzz` runs each target for
# FUZZ_SECONDS on a working corpus seeded from the committed one (build/fuzz/corpus/),
# crashes land in build/fuzz/artifacts/. `make fuzz-check` (in make test) replays the
# committed corpus and every kept regression input, then runs FUZZ_CHECK_SECONDS of new
# cases per target; any crash fails it.
FUZZ_SECONDS       ?= 600
FUZZ_CHECK_SECONDS ?= 15
FUZZ_OPTIONS       := -rss_limit_mb=4096 -timeout=10 -max_len=65536
# The committed inputs of target $$name: its corpus, and its regressions where it has any
# (git keeps no empty folder, so a target with none has no regressions folder).
FUZZ_INPUTS        = tests/fuzz/corpus/$$name \
  $$(test -d tests/fuzz/regressions/$$name && echo tests/fuzz/regressions/$$name)
fuzz: deps-test $(addprefix $(FUZZ)/,$(FUZZ_TARGETS))
	@mkdir -p $(FUZZ)/artifacts
	@for target in $(FUZZ_TARGETS); do \
	  name=$${target#fuzz_}; mkdir -p $(FUZZ)/corpus/$$name; \
	  echo "fuzz: $$target for $(FUZZ_SECONDS) s"; \
	  ./$(FUZZ)/$$target $(FUZZ_OPTIONS) -max_total_time=$(FUZZ_SECONDS) \
	    -artifact_prefix=$(FUZZ)/artifacts/$$name- -print_final_stats=1 \
	    $(FUZZ)/corpus/$$name $(FUZZ_INPUTS) \
	    || exit 1; done

# One target per fuzzer, so that `make -j` checks them side by side.
fuzz-check: $(addprefix fuzz-check-,$(FUZZ_TARGETS))

$(addprefix fuzz-check-,$(FUZZ_TARGETS)): fuzz-check-%: $(FUZZ)/%
	@mkdir -p $(FUZZ)/artifacts
	@target=$*; name=$${target#fuzz_}; fresh=$$(mktemp -d); \
	  echo "fuzz-check: $$target: the corpus, the regressions, $(FUZZ_CHECK_SECONDS) s of new cases"; \
	  ./$(FUZZ)/$$target $(FUZZ_OPTIONS) -runs=0 \
	    $(FUZZ_INPUTS) 2>$(FUZZ)/$$name-replay.log \
	    || { tail -40 $(FUZZ)/$$name-replay.log; rm -rf $$fresh; exit 1; }; \
	  ./$(FUZZ)/$$target $(FUZZ_OPTIONS) -max_total_time=$(FUZZ_CHECK_SECONDS) \
	    -artifact_prefix=$(FUZZ)/artifacts/$$name- $$fresh tests/fuzz/corpus/$$name \
	    2>$(FUZZ)/$$name-check.log || { tail -40 $(FUZZ)/$$name-check.log; rm -rf $$fresh; exit 1; }; \
	  grep -h "stat::number_of_executed_units\|Done" $(FUZZ)/$$name-check.log | tail -1; \
	  rm -rf $$fresh

# The integration suite against the ThreadSanitizer build: tests/integration/
# test_race_load.py drives every thread at once (RESP, native and HTTP clients, the
# flash writer, reclaim, CONFIG SET, SIGHUP); any race report fails the server's clean
# exit check. halt_on_error=0 lets a run report every race it finds.
integration-tsan: $(TSAN)/strata-server $(BUILD)/libstrata.so $(ASAN)/tests/test_libstrata \
                  $(BUILD)/bench/loadgen $(BUILD)/bench/s3load
	STRATA_SERVER=$(TSAN)/strata-server STRATA_SANITIZED=1 STRATA_TSAN=1 \
	  TSAN_OPTIONS="halt_on_error=0 second_deadlock_stack=1" \
	  $(PYTHON) -m pytest -q --durations=12 tests/integration

# ---- benchmarks (docs/benchmarks.md records the figures) ----

bench: all
	@scripts/install-deps.sh bench
	$(MAKE) --no-print-directory $(BUILD)/bench/loadgen $(BUILD)/bench/memcpy_probe \
	  $(BUILD)/bench/s3load
	$(PYTHON) bench/suite.py
	$(PYTHON) bench/s3.py
	$(PYTHON) bench/tls.py
	$(PYTHON) bench/redis_types.py

# The narrower benchmarks of earlier issues (docs/benchmarks-earlier.md).
bench-earlier: all
	@scripts/install-deps.sh bench
	$(MAKE) --no-print-directory $(BUILD)/bench/engine_shards $(BUILD)/bench/http_microhttpd
	./$(BUILD)/bench/engine_shards
	bench/redis_benchmark.sh
	$(PYTHON) bench/flash_tier.py
	$(PYTHON) bench/native_kv.py
	bench/http_server_choice.sh

# ---- install (docs/install.md) ----
# make install [PREFIX=/usr/local] [DESTDIR=/staging/root]; make uninstall with the same.
PREFIX     ?= /usr/local
BINDIR     := $(PREFIX)/bin
LIBDIR     := $(PREFIX)/lib
INCLUDEDIR := $(PREFIX)/include
PKGCONFIGDIR := $(LIBDIR)/pkgconfig
# Configuration: /etc for PREFIX=/usr, else PREFIX/etc (/usr/local/etc/strata/).
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
MANDIR     ?= $(PREFIX)/share/man
# systemd looks for units in /usr/local/lib/systemd/system and /usr/lib/systemd/system.
UNITDIR    ?= $(PREFIX)/lib/systemd/system
# The Python package (client/python/strata/, pure Python) is copied where Debian's
# /usr/bin/python3 looks: /usr/lib/python3/dist-packages for PREFIX=/usr, else
# PREFIX/lib/python3.X/dist-packages (/usr/local/lib/python3.11/dist-packages on Debian 12).
# A virtual environment installs it with pip instead (docs/install.md).
PYTHON_VERSION = $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
PYTHONDIR  ?= $(if $(filter /usr,$(PREFIX)),$(PREFIX)/lib/python3/dist-packages,$(PREFIX)/lib/python$(PYTHON_VERSION)/dist-packages)

$(BUILD)/strata.pc: src/base/version.h Makefile
	@mkdir -p $(dir $@)
	{ echo 'prefix=$(PREFIX)'; \
	  echo 'exec_prefix=$${prefix}'; \
	  echo 'libdir=$(LIBDIR)'; \
	  echo 'includedir=$(INCLUDEDIR)'; \
	  echo ''; \
	  echo 'Name: strata'; \
	  echo 'Description: libstrata, the client library of the strata data store (native protocol)'; \
	  echo 'Version: $(VERSION)'; \
	  echo 'Requires.private: libisal libssl libcrypto'; \
	  echo 'Cflags: -I$${includedir}'; \
	  echo 'Libs: -L$${libdir} -lstrata'; \
	  echo 'Libs.private: -pthread'; } > $@

# The sample config and the man page come from the option table, through the server's
# hidden --print-config and --man.
$(BUILD)/strata.conf: $(BUILD)/strata-server
	./$(BUILD)/strata-server --print-config > $@

$(BUILD)/strata-server.1: $(BUILD)/strata-server
	./$(BUILD)/strata-server --man > $@

$(BUILD)/strata.service: packaging/strata.service.in
	@mkdir -p $(dir $@)
	sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' $< > $@

# The .pc file and the unit record the install's paths, so they are made on every install.
.PHONY: install uninstall $(BUILD)/strata.pc $(BUILD)/strata.service
install: $(BUILD)/strata-server $(BUILD)/libstrata.so $(BUILD)/libstrata.a $(BUILD)/strata.pc \
         $(BUILD)/strata.service $(BUILD)/strata.conf $(BUILD)/strata-server.1
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) \
	  $(DESTDIR)$(PKGCONFIGDIR)
	install -m 755 $(BUILD)/strata-server $(DESTDIR)$(BINDIR)/strata-server
	install -m 755 $(BUILD)/libstrata.so $(DESTDIR)$(LIBDIR)/libstrata.so.$(VERSION)
	ln -sf libstrata.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libstrata.so
	install -m 644 $(BUILD)/libstrata.a $(DESTDIR)$(LIBDIR)/libstrata.a
	install -m 644 include/strata.h include/strata_protocol.h $(DESTDIR)$(INCLUDEDIR)/
	install -m 644 $(BUILD)/strata.pc $(DESTDIR)$(PKGCONFIGDIR)/strata.pc
	install -d $(DESTDIR)$(PYTHONDIR)/strata
	install -m 644 client/python/strata/__init__.py $(DESTDIR)$(PYTHONDIR)/strata/__init__.py
	install -d $(DESTDIR)$(UNITDIR)
	install -m 644 $(BUILD)/strata.service $(DESTDIR)$(UNITDIR)/strata.service
	install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(SYSCONFDIR)/strata
	install -m 644 $(BUILD)/strata-server.1 $(DESTDIR)$(MANDIR)/man1/strata-server.1
	@# A config file already there is the operator's: it is kept.
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/strata/strata.conf ]; then \
	  echo "kept $(DESTDIR)$(SYSCONFDIR)/strata/strata.conf"; \
	else install -m 644 $(BUILD)/strata.conf $(DESTDIR)$(SYSCONFDIR)/strata/strata.conf; fi
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then ldconfig; fi

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/strata-server $(DESTDIR)$(LIBDIR)/libstrata.so.$(VERSION) \
	  $(DESTDIR)$(LIBDIR)/$(SONAME) $(DESTDIR)$(LIBDIR)/libstrata.so \
	  $(DESTDIR)$(LIBDIR)/libstrata.a $(DESTDIR)$(INCLUDEDIR)/strata.h \
	  $(DESTDIR)$(INCLUDEDIR)/strata_protocol.h $(DESTDIR)$(PKGCONFIGDIR)/strata.pc
	rm -rf $(DESTDIR)$(PYTHONDIR)/strata
	rm -f $(DESTDIR)$(UNITDIR)/strata.service $(DESTDIR)$(MANDIR)/man1/strata-server.1
	@# The config file goes only if nobody changed it.
	@if cmp -s $(BUILD)/strata.conf $(DESTDIR)$(SYSCONFDIR)/strata/strata.conf; then \
	  rm -f $(DESTDIR)$(SYSCONFDIR)/strata/strata.conf; \
	  rmdir $(DESTDIR)$(SYSCONFDIR)/strata 2>/dev/null || true; \
	elif [ -e $(DESTDIR)$(SYSCONFDIR)/strata/strata.conf ]; then \
	  echo "kept $(DESTDIR)$(SYSCONFDIR)/strata/strata.conf (changed)"; fi
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then ldconfig; fi

# ---- housekeeping ----

FORMAT_SOURCES = $(shell git ls-files '*.c' '*.h' 2>/dev/null || find src tests -name '*.[ch]')

format:
	clang-format -i $(FORMAT_SOURCES)

format-check:
	@clang-format --dry-run --Werror $(FORMAT_SOURCES) && echo "format-check: ok"

deps: deps-test

deps-build:
	@scripts/install-deps.sh build

deps-test:
	@scripts/install-deps.sh test

clean:
	rm -rf $(BUILD)

.SECONDARY:

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
