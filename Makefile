# drd - disaster-recovery failover orchestrator for PostgreSQL
#   make          bin/drd, bin/drctl, tests/app helpers
#   make check    installs missing Debian packages, then every test
#   make demo     a local sandbox: two clusters, drd, the dashboard
#   make bench    performance figures
#   make fuzz     every libFuzzer harness for FUZZ_SECONDS (default 10)
#   make install PREFIX=/usr/local

PREFIX   ?= /usr/local
CC       ?= cc
PKGS     := libpq libmicrohttpd libcurl sqlite3 jansson
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WERROR   := $(if $(CI),-Werror,)
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wformat=2 \
            -Wno-unused-parameter -Wno-format-truncation $(WERROR) -Iinclude $(PKG_CFLAGS)
LDLIBS   += $(PKG_LIBS) -lpthread
SAN      := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
TSAN     := -fsanitize=thread -fno-omit-frame-pointer

# One folder per subsystem (src/<room>/, public headers in include/drd/<room>/);
# tests/layering.sh keeps the dependencies between rooms pointing one way.
MAINS    := src/daemon/drd.c src/cli/drctl.c
# drctl's other files (src/cli/) are linked into drctl only.
CLI_SRC  := $(filter-out $(MAINS),$(wildcard src/cli/*.c))
CLI_OBJ  := $(CLI_SRC:src/%.c=build/obj/%.o)
LIB_SRC  := $(filter-out $(MAINS) $(CLI_SRC),$(wildcard src/*/*.c))
HDRS     := $(wildcard include/drd/*/*.h src/*/*.h)
LIB_OBJ  := $(LIB_SRC:src/%.c=build/obj/%.o)
SAN_OBJ  := $(LIB_SRC:src/%.c=build/san/%.o)
TSAN_OBJ := $(LIB_SRC:src/%.c=build/tsan/%.o)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=build/tests/%)
UNIT_SAN := $(UNIT_SRC:tests/unit/%.c=build/tests-san/%)
TOOLS_SRC := $(wildcard tests/tools/*.c)
TOOLS_BIN := $(TOOLS_SRC:tests/tools/%.c=build/tools/%)

.PHONY: all deps check unit demo bench install clean lint fuzz fuzz-build
.SECONDARY:
all: bin/drd bin/drctl $(TOOLS_BIN)

bin/drd: build/obj/daemon/drd.o $(LIB_OBJ) | bin
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)
bin/drctl: build/obj/cli/drctl.o $(CLI_OBJ) $(LIB_OBJ) | bin
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)
# drd with ASan+UBSan, for the integration tests that look for memory errors
bin/drd-san: build/san/daemon/drd.o $(SAN_OBJ) | bin
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(LDLIBS)
# drd with ThreadSanitizer: data races between the loop and the worker
# threads (sync job, pool, preflight, readiness); tests/integration/t_tsan.sh
bin/drd-tsan: build/tsan/daemon/drd.o $(TSAN_OBJ) | bin
	$(CC) $(CFLAGS) $(TSAN) -o $@ $^ $(LDLIBS)
# Where the installed page is looked for (see web_root in README).
build/obj/conf/config.o build/san/conf/config.o build/tsan/conf/config.o: CFLAGS += -DDRD_SHAREDIR='"$(PREFIX)/share/drd"'
build/obj/%.o: src/%.c $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -MMD -c -o $@ $<
build/san/%.o: src/%.c $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN) -c -o $@ $<
build/tsan/%.o: src/%.c $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(TSAN) -c -o $@ $<
build/tests/%: tests/unit/%.c $(LIB_OBJ) | build/tests
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS) -lcmocka
build/tests-san/%: tests/unit/%.c $(SAN_OBJ) | build/tests-san
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(LDLIBS) -lcmocka
build/tools/%: tests/tools/%.c $(LIB_OBJ) | build/tools
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)
bin build/tests build/tests-san build/tools:
	mkdir -p $@

# libFuzzer harnesses (tests/fuzz/fuzz_*.c): clang, ASan+UBSan, the library
# objects compiled separately into build/fuzz/obj. `make fuzz` runs each
# for FUZZ_SECONDS from its seed corpus tests/fuzz/corpus/NAME (new inputs
# go to build/fuzz/corpus/NAME) and fails on any finding.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 10
FUZZ_CFLAGS  := $(filter-out -Wno-format-truncation,$(CFLAGS)) \
                -fsanitize=address,undefined -fno-sanitize-recover=undefined \
                -fno-omit-frame-pointer -Wno-format-nonliteral -Wno-string-concatenation
FUZZ_SRC     := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN     := $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/%)
FUZZ_OBJ     := $(LIB_SRC:src/%.c=build/fuzz/obj/%.o)
HAVE_FUZZ_CC := $(shell command -v $(FUZZ_CC) 2>/dev/null)

build/fuzz/obj/%.o: src/%.c $(HDRS)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<
build/fuzz/%: tests/fuzz/%.c $(wildcard tests/fuzz/*.h) $(FUZZ_OBJ) | build/fuzz/obj
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_OBJ) $(LDLIBS)
build/fuzz/obj:
	mkdir -p $@

fuzz-build: $(FUZZ_BIN)

fuzz: $(if $(HAVE_FUZZ_CC),fuzz-build)
	@FUZZ_CC=$(FUZZ_CC) FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run.sh

deps:
	@tests/lib/deps.sh

unit: $(UNIT_BIN) $(UNIT_SAN)

# Everything: unit tests (plain and ASan+UBSan), then integration tests
# against real PostgreSQL clusters. Ends with "N passed, N failed".
check: deps
	@$(MAKE) --no-print-directory all unit bin/drd-san bin/drd-tsan $(if $(HAVE_FUZZ_CC),fuzz-build)
	@tests/run.sh

demo: deps
	@$(MAKE) --no-print-directory all
	@tests/demo.sh

# Every tests/bench*.sh in turn (BENCH_QUICK=1 for smaller data sets).
bench: deps
	@$(MAKE) --no-print-directory all
	@for b in tests/bench*.sh; do echo "== $$b"; $$b || exit 1; done

lint:
	@! grep -nE '\b(sprintf|vsprintf|strcpy|strcat|strncpy|gets|atoi)\s*\(' src/*/*.c | grep -v snprintf
	@tests/layering.sh
	@tests/funclen.sh

# The unit file names PREFIX's paths: conf/drd.service is written for
# /usr/local and rewritten here for PREFIX (into share/drd/conf and
# lib/systemd/system, which systemd searches for /usr/local).
install: bin/drd bin/drctl
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/drd/web \
		$(DESTDIR)$(PREFIX)/share/drd/runbooks $(DESTDIR)$(PREFIX)/share/drd/conf \
		$(DESTDIR)$(PREFIX)/share/doc/drd $(DESTDIR)$(PREFIX)/lib/systemd/system
	install -m 755 bin/drd bin/drctl $(DESTDIR)$(PREFIX)/bin/
	install -m 644 web/* $(DESTDIR)$(PREFIX)/share/drd/web/
	install -m 644 runbooks/* $(DESTDIR)$(PREFIX)/share/drd/runbooks/
	install -m 644 conf/drd.conf $(DESTDIR)$(PREFIX)/share/drd/conf/
	sed 's|/usr/local|$(PREFIX)|g' conf/drd.service >build/drd.service
	install -m 644 build/drd.service $(DESTDIR)$(PREFIX)/share/drd/conf/drd.service
	install -m 644 build/drd.service $(DESTDIR)$(PREFIX)/lib/systemd/system/drd.service
	install -m 644 README.md $(DESTDIR)$(PREFIX)/share/doc/drd/README.md

clean:
	rm -rf bin build

-include $(wildcard build/obj/*/*.d)
