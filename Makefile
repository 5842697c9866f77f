# drd - disaster-recovery failover orchestrator for PostgreSQL
#   make          bin/drd, bin/drctl, tests/app helpers
#   make check    installs missing Debian packages, then every test
#   make demo     a local sandbox: two clusters, drd, the dashboard
#   make bench    performance figures
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

MAINS    := src/drd.c src/drctl.c
LIB_SRC  := $(filter-out $(MAINS),$(wildcard src/*.c))
LIB_OBJ  := $(LIB_SRC:src/%.c=build/obj/%.o)
SAN_OBJ  := $(LIB_SRC:src/%.c=build/san/%.o)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=build/tests/%)
UNIT_SAN := $(UNIT_SRC:tests/unit/%.c=build/tests-san/%)
TOOLS_SRC := $(wildcard tests/tools/*.c)
TOOLS_BIN := $(TOOLS_SRC:tests/tools/%.c=build/tools/%)

.PHONY: all deps check unit demo bench install clean lint
.SECONDARY:
all: bin/drd bin/drctl $(TOOLS_BIN)

bin/drd: build/obj/drd.o $(LIB_OBJ) | bin
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)
bin/drctl: build/obj/drctl.o $(LIB_OBJ) | bin
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)
# drd with ASan+UBSan, for the integration tests that look for memory errors
bin/drd-san: build/san/drd.o $(SAN_OBJ) | bin
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(LDLIBS)
build/obj/%.o: src/%.c $(wildcard include/drd/*.h) | build/obj
	$(CC) $(CFLAGS) -MMD -c -o $@ $<
build/san/%.o: src/%.c $(wildcard include/drd/*.h) | build/san
	$(CC) $(CFLAGS) $(SAN) -c -o $@ $<
build/tests/%: tests/unit/%.c $(LIB_OBJ) | build/tests
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS) -lcmocka
build/tests-san/%: tests/unit/%.c $(SAN_OBJ) | build/tests-san
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(LDLIBS) -lcmocka
build/tools/%: tests/tools/%.c $(LIB_OBJ) | build/tools
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)
bin build/obj build/san build/tests build/tests-san build/tools:
	mkdir -p $@

deps:
	@tests/lib/deps.sh

unit: $(UNIT_BIN) $(UNIT_SAN)

# Everything: unit tests (plain and ASan+UBSan), then integration tests
# against real PostgreSQL clusters. Ends with "N passed, N failed".
check: deps
	@$(MAKE) --no-print-directory all unit bin/drd-san
	@tests/run.sh

demo: deps
	@$(MAKE) --no-print-directory all
	@tests/demo.sh

# Every tests/bench*.sh in turn (BENCH_QUICK=1 for smaller data sets).
bench: deps
	@$(MAKE) --no-print-directory all
	@for b in tests/bench*.sh; do echo "== $$b"; $$b || exit 1; done

lint:
	@! grep -nE '\b(sprintf|vsprintf|strcpy|strcat|strncpy|gets|atoi)\s*\(' src/*.c | grep -v snprintf

install: bin/drd bin/drctl
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/drd/web \
		$(DESTDIR)$(PREFIX)/share/drd/runbooks $(DESTDIR)$(PREFIX)/share/drd/conf
	install -m 755 bin/drd bin/drctl $(DESTDIR)$(PREFIX)/bin/
	install -m 644 web/* $(DESTDIR)$(PREFIX)/share/drd/web/ 2>/dev/null || true
	install -m 644 runbooks/* $(DESTDIR)$(PREFIX)/share/drd/runbooks/ 2>/dev/null || true
	install -m 644 conf/* $(DESTDIR)$(PREFIX)/share/drd/conf/

clean:
	rm -rf bin build

-include $(wildcard build/obj/*.d)
