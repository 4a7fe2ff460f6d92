# ragq: the nginx module, the worker, ingestion, tests, demo and benchmarks.
SHELL := /bin/bash
#
#   make            build/ngx_http_ragq_module.so, build/ragq-worker, build/ragq-ingest
#   make asan       the same under AddressSanitizer + UBSan, in build/asan/
#   make test       the whole suite (tests/run)
#   make demo       question in, answer out, on private ports (scripts/demo)
#   make bench      benchmarks, writes bench/RESULTS.md
#   make format     clang-format in place; make lint checks it

CC       ?= cc
NGX_SRC  ?= /usr/share/nginx/src
BUILD    ?= build
WARN      = -Wall -Wextra -Werror
CFLAGS   ?= -O2 -g
WCFLAGS   = -std=gnu99 $(WARN) -D_GNU_SOURCE
WLIBS     = -lhiredis -lcurl -lm

INGEST_SRCS   = $(wildcard worker/ingest*.c)
WORKER_COMMON = $(filter-out worker/main.c $(INGEST_SRCS),$(wildcard worker/*.c))
WORKER_HDRS   = $(wildcard worker/*.h)
LUA_SCRIPTS   = $(wildcard worker/scripts/*.lua)
WORKER_OBJS   = $(patsubst worker/%.c,$(BUILD)/%.o,$(WORKER_COMMON)) \
                $(BUILD)/scripts_lua.o
MODULE_SRCS   = config $(wildcard ngx_http_ragq_*.c ngx_http_ragq_*.h)

all: module worker

module: $(BUILD)/ngx_http_ragq_module.so
worker: $(BUILD)/ragq-worker $(BUILD)/ragq-ingest

# The module is built inside a copy of nginx-dev's tree, configured exactly
# as Debian's nginx was (conf_flags), so the .so loads into /usr/sbin/nginx.
$(BUILD)/nginx-src/.configured-$(notdir $(BUILD)): $(NGX_SRC)/conf_flags config
	rm -rf $(BUILD)/nginx-src && mkdir -p $(BUILD) && cp -r $(NGX_SRC) $(BUILD)/nginx-src
	cd $(BUILD)/nginx-src && . ./conf_flags && \
	    ./configure "$${NGX_CONF_FLAGS[@]}" \
	        --with-cc-opt="$(MODULE_CC_OPT)" \
	        --add-dynamic-module=$(CURDIR) >configure.log 2>&1 \
	    || { tail -30 configure.log; exit 1; }
	touch $@

MODULE_CC_OPT ?= -g -O2 -fstack-protector-strong -Wformat -Werror=format-security -fPIC -D_FORTIFY_SOURCE=2 -Wall -Wextra -Werror -Wno-unused-parameter

$(BUILD)/ngx_http_ragq_module.so: $(BUILD)/nginx-src/.configured-$(notdir $(BUILD)) $(MODULE_SRCS)
	$(MAKE) -C $(BUILD)/nginx-src -f objs/Makefile modules >$(BUILD)/module-build.log 2>&1 \
	    || { cat $(BUILD)/module-build.log | grep -E 'error|warning' | head -40; exit 1; }
	cp $(BUILD)/nginx-src/objs/ngx_http_ragq_module.so $@

$(BUILD)/%.o: worker/%.c $(WORKER_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(WCFLAGS) -c -o $@ $<

# The Lua scripts (worker/scripts/*.lua) as C strings, generated.
$(BUILD)/gen/scripts_lua.c: $(LUA_SCRIPTS) worker/scripts/embed.sh
	@mkdir -p $(dir $@)
	worker/scripts/embed.sh $@ $(LUA_SCRIPTS)

$(BUILD)/scripts_lua.o: $(BUILD)/gen/scripts_lua.c $(WORKER_HDRS)
	$(CC) $(CFLAGS) $(WCFLAGS) -Iworker -c -o $@ $<

$(BUILD)/ragq-worker: $(WORKER_OBJS) $(BUILD)/main.o
	$(CC) $(CFLAGS) -o $@ $^ $(WLIBS)

$(BUILD)/ragq-ingest: $(WORKER_OBJS) $(patsubst worker/%.c,$(BUILD)/%.o,$(INGEST_SRCS))
	$(CC) $(CFLAGS) -o $@ $^ $(WLIBS)

# Unit tests (Check); json-c only checks, strictly, the JSON they see written.
UNIT_CFLAGS = $(shell pkg-config --cflags json-c check)
UNIT_LIBS   = $(shell pkg-config --libs json-c check)
UNIT_SRCS = $(wildcard tests/unit/*.c)
$(BUILD)/unit-tests: $(UNIT_SRCS) $(WORKER_OBJS)
	$(CC) $(CFLAGS) $(WCFLAGS) $(UNIT_CFLAGS) -Iworker -o $@ $(UNIT_SRCS) \
	    $(WORKER_OBJS) $(WLIBS) $(UNIT_LIBS)
unit: $(BUILD)/unit-tests

ASAN_FLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
asan:
	$(MAKE) BUILD=build/asan CFLAGS="$(ASAN_FLAGS)" \
	    MODULE_CC_OPT="$(ASAN_FLAGS) -fPIC -Wall -Wextra -Werror -Wno-unused-parameter" \
	    all build/asan/unit-tests

# The commands of the README: each installs what is missing first.
deps:
	scripts/install-deps

test: deps
	$(MAKE) all unit
	tests/run

demo: deps
	$(MAKE) all
	scripts/demo

bench: deps
	$(MAKE) all
	bench/run

# The worker and the unit tests: .clang-format with clang-format (14). The
# module: nginx's style, .clang-format-nginx with clang-format-19.
FORMAT_FILES = $(wildcard worker/*.c worker/*.h tests/unit/*.c)
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

.PHONY: all module worker unit asan deps test demo bench format lint clean
