# ragq: the nginx module, the worker, ingestion, tests, demo and benchmarks.
SHELL := /bin/bash
#
#   make            build/ngx_http_ragq_module.so, build/ragq-worker, build/ragq-ingest
#   make install    the module, its modules-available snippet, the programs, man pages,
#                   the systemd units and the environment file (DESTDIR, PREFIX)
#   make deb        Debian packages libnginx-mod-http-ragq and ragq-worker in build/deb/
#   make lintian    make deb, then lintian on the packages
#   make asan       the same under AddressSanitizer + UBSan, in build/asan/
#   make test       the whole suite (tests/run)
#   make demo       question in, answer out, on private ports (scripts/demo)
#   make demo-serve the same stack left running with the chat page (web/); prints
#                   its URL, Ctrl-C stops it (scripts/demo --serve; DEMO_PORT=8080)
#   make bench      benchmarks, writes bench/RESULTS.md
#   make chaos      crashes, stalls and flapping upstreams under load (tests/chaos,
#                   ~4 min); make chaos-short is the bounded pass CI runs (~1.5 min)
#   make format     clang-format in place; make lint checks it
#   make fuzz       libFuzzer targets (fuzz/), FUZZ_SECONDS each; make fuzz-ci: 20 s
#
# Build flags: CFLAGS, CPPFLAGS and LDFLAGS from the environment or the command
# line are used for the module and the programs (dpkg-buildflags' in the .deb
# build).  Hardening is added unless already asked for or HARDENING=0: stack
# protector, _FORTIFY_SOURCE=2 (when optimising), -z relro -z now, PIE programs.
#
# Another nginx: NGX_SRC is a copy of the source tree of the nginx the module
# will be loaded into.  Debian's nginx-dev tree carries that nginx's configure
# arguments (conf_flags); for a plain tree give them in NGX_CONFIGURE_ARGS, as
# `nginx -V` prints them (or at least --with-compat on both sides).

VERSION  := $(shell cat VERSION)
CC       ?= cc
NGX_SRC  ?= /usr/share/nginx/src
NGX_CONFIGURE_ARGS ?=
BUILD    ?= build
WARN      = -Wall -Wextra -Werror
CFLAGS   ?= -O2 -g
CPPFLAGS ?=
LDFLAGS  ?=
WCFLAGS   = -std=gnu99 $(WARN) -D_GNU_SOURCE -DRAGQ_VERSION='"$(VERSION)"'
WLIBS     = -lhiredis -lcurl -lssl -lcrypto -lpthread -lm

# Hardening, each part only when the given flags do not already decide it.
HARDENING ?= 1
ifeq ($(HARDENING),1)
HARDEN_CFLAGS   = $(if $(filter -fstack-protector% -fno-stack-protector%,$(CFLAGS)),,-fstack-protector-strong)
HARDEN_CPPFLAGS = $(if $(findstring _FORTIFY_SOURCE,$(CFLAGS) $(CPPFLAGS)),,$(if $(filter -O1 -O2 -O3 -Os -Og -Ofast,$(CFLAGS)),-D_FORTIFY_SOURCE=2))
HARDEN_LDFLAGS  = -Wl,-z,relro -Wl,-z,now
HARDEN_PIE_CFLAGS  = $(if $(filter -fno-pie -fno-PIE -fpie -fPIE,$(CFLAGS)),,-fPIE)
HARDEN_PIE_LDFLAGS = $(if $(filter -no-pie -pie,$(LDFLAGS)),,-pie)
endif
# Programs: ours first, so that the given flags can still override them.
P_CPPFLAGS = $(HARDEN_CPPFLAGS) $(CPPFLAGS)
P_CFLAGS   = $(HARDEN_CFLAGS) $(HARDEN_PIE_CFLAGS) $(CFLAGS)
P_LDFLAGS  = $(HARDEN_LDFLAGS) $(HARDEN_PIE_LDFLAGS) $(LDFLAGS)

INGEST_SRCS   = $(wildcard worker/ingest*.c)
WORKER_COMMON = $(filter-out worker/main.c $(INGEST_SRCS),$(wildcard worker/*.c))
WORKER_HDRS   = $(wildcard worker/*.h)
LUA_SCRIPTS   = $(wildcard worker/scripts/*.lua)
WORKER_OBJS   = $(patsubst worker/%.c,$(BUILD)/%.o,$(WORKER_COMMON)) \
                $(BUILD)/scripts_lua.o
MODULE_SRCS   = config VERSION $(wildcard ngx_http_ragq_*.c ngx_http_ragq_*.h)

all: module worker

module: $(BUILD)/ngx_http_ragq_module.so
worker: $(BUILD)/ragq-worker $(BUILD)/ragq-ingest

# The module is built inside a copy of the nginx source tree, configured
# exactly as the nginx it is for (Debian's conf_flags, or NGX_CONFIGURE_ARGS),
# so the .so loads into that nginx.  After changing flags: make clean.
NGX_CONF_FLAGS_FILE = $(wildcard $(NGX_SRC)/conf_flags)
$(BUILD)/nginx-src/.configured-$(notdir $(BUILD)): $(NGX_CONF_FLAGS_FILE) config VERSION
	@if [ ! -x "$(NGX_SRC)/configure" ]; then \
	    echo "ragq: $(NGX_SRC) is not an nginx source tree (no configure);" \
	         "install nginx-dev (scripts/install-deps --build) or set NGX_SRC" >&2; exit 1; fi
	@if [ -z "$(NGX_CONF_FLAGS_FILE)" ] && [ -z "$(NGX_CONFIGURE_ARGS)" ]; then \
	    echo "ragq: $(NGX_SRC) has no conf_flags: give the configure arguments of the" \
	         "nginx the module is for, e.g. NGX_CONFIGURE_ARGS='--with-compat ...'" \
	         "(see nginx -V)" >&2; exit 1; fi
	rm -rf $(BUILD)/nginx-src && mkdir -p $(BUILD) && cp -r $(NGX_SRC) $(BUILD)/nginx-src
	cd $(BUILD)/nginx-src && \
	    if [ -n "$(NGX_CONF_FLAGS_FILE)" ] && [ -z "$(NGX_CONFIGURE_ARGS)" ]; then \
	        . ./conf_flags; else eval "NGX_CONF_FLAGS=($(NGX_CONFIGURE_ARGS))"; fi && \
	    ./configure "$${NGX_CONF_FLAGS[@]}" \
	        --with-cc-opt="$(MODULE_CC_OPT)" \
	        --with-ld-opt="$(MODULE_LD_OPT)" \
	        --add-dynamic-module=$(CURDIR) >configure.log 2>&1 \
	    || { tail -30 configure.log; exit 1; }
	touch $@

MODULE_CC_OPT ?= $(HARDEN_CFLAGS) $(CFLAGS) $(HARDEN_CPPFLAGS) $(CPPFLAGS) -fPIC $(WARN) -Wno-unused-parameter
MODULE_LD_OPT ?= $(HARDEN_LDFLAGS) $(LDFLAGS)

$(BUILD)/ngx_http_ragq_module.so: $(BUILD)/nginx-src/.configured-$(notdir $(BUILD)) $(MODULE_SRCS)
	@# without our command line's variables (CFLAGS=... would replace the CFLAGS
	@# configure wrote, -DRAGQ_VERSION and nginx's own flags with them)
	env -u MAKEFLAGS -u MFLAGS $(MAKE) -C $(BUILD)/nginx-src -f objs/Makefile modules \
	    >$(BUILD)/module-build.log 2>&1 \
	    || { cat $(BUILD)/module-build.log | grep -E 'error|warning' | head -40; exit 1; }
	@# a new file, renamed over the old: nginx processes running with the old
	@# one mapped keep it intact (cp over it in place crashes them)
	cp $(BUILD)/nginx-src/objs/ngx_http_ragq_module.so $@.tmp && mv -f $@.tmp $@

$(BUILD)/%.o: worker/%.c $(WORKER_HDRS) VERSION
	@mkdir -p $(dir $@)
	$(CC) $(P_CPPFLAGS) $(P_CFLAGS) $(WCFLAGS) -c -o $@ $<

# The Lua scripts (worker/scripts/*.lua) as C strings, generated.
$(BUILD)/gen/scripts_lua.c: $(LUA_SCRIPTS) worker/scripts/embed.sh
	@mkdir -p $(dir $@)
	worker/scripts/embed.sh $@ $(LUA_SCRIPTS)

$(BUILD)/scripts_lua.o: $(BUILD)/gen/scripts_lua.c $(WORKER_HDRS)
	$(CC) $(P_CPPFLAGS) $(P_CFLAGS) $(WCFLAGS) -Iworker -c -o $@ $<

$(BUILD)/ragq-worker: $(WORKER_OBJS) $(BUILD)/main.o
	$(CC) $(P_CFLAGS) $(P_LDFLAGS) -o $@ $^ $(WLIBS)

$(BUILD)/ragq-ingest: $(WORKER_OBJS) $(patsubst worker/%.c,$(BUILD)/%.o,$(INGEST_SRCS))
	$(CC) $(P_CFLAGS) $(P_LDFLAGS) -o $@ $^ $(WLIBS)

# nginx -t with the built module loaded, as Debian's module packages check theirs.
NGINX ?= /usr/sbin/nginx
module-check: module
	printf 'load_module %s;\nevents {}\n' "$(abspath $(BUILD))/ngx_http_ragq_module.so" \
	    >$(BUILD)/module-check.conf
	$(NGINX) -t -q -p "$(abspath $(BUILD))/" -c "$(abspath $(BUILD))/module-check.conf" \
	    -e stderr -g 'error_log stderr; pid /dev/null;'

# make install: programs under PREFIX; the module and its load snippet where
# Debian's nginx looks for them (--modules-path, modules-available); the unit,
# its template for several workers, and /etc/default/ragq-worker read by them.  Nothing is enabled or started:
# the module is enabled by linking the snippet into /etc/nginx/modules-enabled/.
DESTDIR    ?=
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
UNITDIR    ?= $(PREFIX)/lib/systemd/system
NGX_MODULES_DIR       ?= /usr/lib/nginx/modules
NGX_MODULES_AVAILABLE ?= /usr/share/nginx/modules-available
MAN_PAGES   = man/ragq-worker.1 man/ragq-ingest.1
# The units name the installed program and environment file.  The template
# ragq-worker@.service (several workers on one host) is made from
# ragq-worker.service by conf/ragq-worker@.service.sed, not kept as a second
# copy: the sandbox, Type=notify, watchdog and timeouts cannot drift apart.
UNIT_PATHS  = -e 's|/usr/bin/ragq-worker|$(BINDIR)/ragq-worker|' \
              -e 's|/etc/default/ragq-worker|$(SYSCONFDIR)/default/ragq-worker|'

# install-files installs what is built without building it first.
install: all
	$(MAKE) --no-print-directory install-files

install-files:
	install -d "$(DESTDIR)$(NGX_MODULES_DIR)" "$(DESTDIR)$(NGX_MODULES_AVAILABLE)" \
	    "$(DESTDIR)$(BINDIR)" "$(DESTDIR)$(MANDIR)/man1" "$(DESTDIR)$(UNITDIR)" \
	    "$(DESTDIR)$(SYSCONFDIR)/default"
	install -m 0644 $(BUILD)/ngx_http_ragq_module.so "$(DESTDIR)$(NGX_MODULES_DIR)/"
	@# modules/ is nginx's own path to --modules-path; elsewhere, the full path
	if [ "$(NGX_MODULES_DIR)" = /usr/lib/nginx/modules ]; then \
	    install -m 0644 conf/mod-http-ragq.conf "$(DESTDIR)$(NGX_MODULES_AVAILABLE)/"; \
	else \
	    sed 's|modules/|$(NGX_MODULES_DIR)/|' conf/mod-http-ragq.conf \
	        >"$(DESTDIR)$(NGX_MODULES_AVAILABLE)/mod-http-ragq.conf"; \
	    chmod 0644 "$(DESTDIR)$(NGX_MODULES_AVAILABLE)/mod-http-ragq.conf"; \
	fi
	install -m 0755 $(BUILD)/ragq-worker $(BUILD)/ragq-ingest "$(DESTDIR)$(BINDIR)/"
	install -m 0644 $(MAN_PAGES) "$(DESTDIR)$(MANDIR)/man1/"
	sed $(UNIT_PATHS) conf/ragq-worker.service >"$(DESTDIR)$(UNITDIR)/ragq-worker.service"
	chmod 0644 "$(DESTDIR)$(UNITDIR)/ragq-worker.service"
	@# the template: ragq-worker.service with the edits of the .sed script,
	@# which must all still find their line
	set -o pipefail; sed -f conf/ragq-worker@.service.sed conf/ragq-worker.service \
	    | sed $(UNIT_PATHS) >"$(DESTDIR)$(UNITDIR)/ragq-worker@.service"
	chmod 0644 "$(DESTDIR)$(UNITDIR)/ragq-worker@.service"
	for line in '^Description=ragq worker %i: ' '^EnvironmentFile=-.*/default/ragq-worker-%i$$' \
	    '^ExecStart=.*/ragq-worker --consumer=%H@%i$$'; do \
	    grep -q "$$line" "$(DESTDIR)$(UNITDIR)/ragq-worker@.service" || { \
	        echo "ragq: conf/ragq-worker@.service.sed made no line $$line from" \
	             "conf/ragq-worker.service: update the script" >&2; \
	        rm -f "$(DESTDIR)$(UNITDIR)/ragq-worker@.service"; exit 1; }; \
	done
	@# an environment file an administrator already edited is kept
	if [ -e "$(DESTDIR)$(SYSCONFDIR)/default/ragq-worker" ]; then \
	    echo "ragq: kept $(DESTDIR)$(SYSCONFDIR)/default/ragq-worker" \
	         "(the new one is conf/ragq-worker.env)"; \
	else \
	    install -m 0644 conf/ragq-worker.env "$(DESTDIR)$(SYSCONFDIR)/default/ragq-worker"; \
	fi

# The environment file is left in place, as dpkg leaves a conffile on remove.
uninstall:
	rm -f "$(DESTDIR)$(NGX_MODULES_DIR)/ngx_http_ragq_module.so" \
	    "$(DESTDIR)$(NGX_MODULES_AVAILABLE)/mod-http-ragq.conf" \
	    "$(DESTDIR)$(BINDIR)/ragq-worker" "$(DESTDIR)$(BINDIR)/ragq-ingest" \
	    $(patsubst man/%,"$(DESTDIR)$(MANDIR)/man1/%",$(MAN_PAGES)) \
	    "$(DESTDIR)$(UNITDIR)/ragq-worker.service" "$(DESTDIR)$(UNITDIR)/ragq-worker@.service"

# make deb: dpkg-buildpackage (debhelper, dh_nginx from nginx-dev) on a copy of
# this tree in build/deb/, so the packages and the build never touch the tree
# or its parent directory.  DEB_BUILD_OPTIONS=nocheck skips the build's tests.
DEB_DIR ?= $(BUILD)/deb
deb:
	rm -rf $(DEB_DIR) && mkdir -p $(DEB_DIR)/ragq-$(VERSION)
	tar -c --exclude-vcs --exclude=./build --exclude='./tests/servroot*' \
	    --exclude=./bench/raw/tmp --exclude=__pycache__ --exclude='*.o' --exclude='*.so' . \
	    | tar -x -C $(DEB_DIR)/ragq-$(VERSION)
	cd $(DEB_DIR)/ragq-$(VERSION) && dpkg-buildpackage --no-sign -b \
	    >../dpkg-buildpackage.log 2>&1 \
	    || { tail -40 ../dpkg-buildpackage.log; exit 1; }
	ls -l $(DEB_DIR)/*.deb

lintian: deb
	lintian --fail-on error,warning --display-info --info $(DEB_DIR)/*.changes

# Unit tests (Check); json-c only checks, strictly, the JSON they see written.
UNIT_CFLAGS = $(shell pkg-config --cflags json-c check)
UNIT_LIBS   = $(shell pkg-config --libs json-c check)
UNIT_SRCS = $(wildcard tests/unit/*.c)
$(BUILD)/unit-tests: $(UNIT_SRCS) $(WORKER_OBJS)
	$(CC) $(P_CPPFLAGS) $(P_CFLAGS) $(WCFLAGS) $(UNIT_CFLAGS) $(P_LDFLAGS) -Iworker -o $@ $(UNIT_SRCS) \
	    $(WORKER_OBJS) $(WLIBS) $(UNIT_LIBS)
unit: $(BUILD)/unit-tests

ASAN_FLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
asan:
	$(MAKE) BUILD=build/asan CFLAGS="$(ASAN_FLAGS)" HARDENING=0 \
	    MODULE_CC_OPT="$(ASAN_FLAGS) -fPIC -Wall -Wextra -Werror -Wno-unused-parameter" \
	    MODULE_LD_OPT= \
	    all build/asan/unit-tests

# make fuzz: the libFuzzer targets of fuzz/ (Debian's clang 14, ASan +
# UBSan), each run for FUZZ_SECONDS (default 60) by fuzz/run from its seed
# corpus; make fuzz-ci: 20 s each (.ci/run). Module targets compile the
# module's files against the configured nginx tree with fuzz/'s stubs;
# worker targets compile the worker's files as they are.
FUZZ_CC       ?= clang-14
FUZZ_SECONDS  ?= 60
FUZZ_DIR       = build/fuzz
FUZZ_SAN       = -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
                 -fno-sanitize-recover=all
FUZZ_MODULE_TARGETS = json chat status entry reply
FUZZ_WORKER_TARGETS = openai qdrant jsonr http1
FUZZ_NGX_INC   = $(addprefix -I$(BUILD)/nginx-src/,src/core src/event \
                 src/event/modules src/os/unix objs src/http src/http/modules \
                 src/http/v2)
FUZZ_MODULE_SRCS = $(addprefix ngx_http_ragq_,json.c request.c job.c job_new.c \
                 enqueue.c enqueue_body.c status.c resp.c reply.c)
FUZZ_COMMON    = fuzz/harness.c fuzz/ngx_stubs.c fuzz/oracle.c
FUZZ_MODULE_OBJS = $(patsubst %.c,$(FUZZ_DIR)/m/%.o,$(notdir \
                 $(FUZZ_MODULE_SRCS) $(FUZZ_COMMON)))
FUZZ_WORKER_OBJS = $(patsubst worker/%.c,$(FUZZ_DIR)/w/%.o,$(WORKER_COMMON)) \
                 $(FUZZ_DIR)/w/scripts_lua.o $(FUZZ_DIR)/w/oracle.o

$(FUZZ_DIR)/m/%.o: %.c $(BUILD)/nginx-src/.configured-$(notdir $(BUILD)) \
		$(wildcard ngx_http_ragq_*.h fuzz/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer-no-link $(WARN) \
	    -Wno-unused-parameter $(FUZZ_NGX_INC) -c -o $@ $<
$(FUZZ_DIR)/m/%.o: fuzz/%.c $(BUILD)/nginx-src/.configured-$(notdir $(BUILD)) \
		$(wildcard ngx_http_ragq_*.h fuzz/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer-no-link $(WARN) \
	    -Wno-unused-parameter $(FUZZ_NGX_INC) -c -o $@ $<
$(FUZZ_DIR)/w/%.o: worker/%.c $(WORKER_HDRS) VERSION
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer-no-link $(WCFLAGS) -c -o $@ $<
$(FUZZ_DIR)/w/scripts_lua.o: $(BUILD)/gen/scripts_lua.c $(WORKER_HDRS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer-no-link $(WCFLAGS) -Iworker -c -o $@ $<
$(FUZZ_DIR)/w/%.o: fuzz/%.c $(wildcard fuzz/*.h) $(WORKER_HDRS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer-no-link $(WCFLAGS) -Iworker -Ifuzz \
	    -c -o $@ $<

$(addprefix $(FUZZ_DIR)/fuzz_,$(FUZZ_MODULE_TARGETS)): $(FUZZ_DIR)/fuzz_%: \
		$(FUZZ_DIR)/m/fuzz_%.o $(FUZZ_MODULE_OBJS)
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(LDLIBS_FUZZ)
# hiredis's own reader: what the module's reader must agree with
$(FUZZ_DIR)/fuzz_reply: LDLIBS_FUZZ = -lhiredis
$(addprefix $(FUZZ_DIR)/fuzz_,$(FUZZ_WORKER_TARGETS)): $(FUZZ_DIR)/fuzz_%: \
		$(FUZZ_DIR)/w/fuzz_%.o $(FUZZ_WORKER_OBJS)
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(WLIBS)

fuzz-build: $(addprefix $(FUZZ_DIR)/fuzz_,$(FUZZ_MODULE_TARGETS) \
	$(FUZZ_WORKER_TARGETS))

fuzz: fuzz-build
	FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run

fuzz-ci: fuzz-build
	FUZZ_SECONDS=20 fuzz/run

# The commands of the README: each installs what is missing first.
# deps: everything for tests, demo and benchmarks (a developer's or CI's
# machine); deps-build: only what make, make install and make deb need.
deps:
	scripts/install-deps

deps-build:
	scripts/install-deps --build

test: deps
	$(MAKE) all unit
	tests/run

demo: deps
	$(MAKE) all
	scripts/demo

demo-serve: deps
	$(MAKE) all
	RAGQ_DEMO_PORT=$(DEMO_PORT) scripts/demo --serve

bench: deps
	$(MAKE) all
	bench/run

# tests/chaos/chaos.py: CHAOS_ARGS="--seed N --keep" to repeat a run and keep its logs.
chaos: all
	tests/chaos/chaos.py $(CHAOS_ARGS)

chaos-short: all
	tests/chaos/chaos.py --short $(CHAOS_ARGS)

# The worker and the unit tests: .clang-format with clang-format (14). The
# module: nginx's style, .clang-format-nginx with clang-format-19.
FORMAT_FILES = $(wildcard worker/*.c worker/*.h tests/unit/*.c fuzz/*.c fuzz/*.h)
MODULE_FORMAT_FILES = $(wildcard ngx_http_ragq_*.c ngx_http_ragq_*.h)
NGX_CLANG_FORMAT ?= clang-format-19 --style=file:.clang-format-nginx
format:
	clang-format -i $(FORMAT_FILES)
	$(NGX_CLANG_FORMAT) -i $(MODULE_FORMAT_FILES)
lint:
	clang-format --dry-run --Werror $(FORMAT_FILES)
	$(NGX_CLANG_FORMAT) --dry-run --Werror $(MODULE_FORMAT_FILES)

clean:
	rm -rf build tests/servroot*

.PHONY: all module worker unit asan deps deps-build test demo demo-serve bench chaos chaos-short format \
	lint clean module-check install install-files uninstall deb lintian fuzz fuzz-build fuzz-ci
