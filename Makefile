# distill - PostgreSQL extension (PGXS build)

EXTENSION   = distill
MODULE_big  = distill
DATA        = $(wildcard sql/$(EXTENSION)--*.sql)
PGFILEDESC  = "distill - distilling step-by-step inside PostgreSQL"

CORE_SRCS    = $(sort $(wildcard src/core/*.c))
TEACHER_SRCS = $(sort $(wildcard src/teacher/*.c))
PG_SRCS      = $(sort $(wildcard src/pg/*.c))
OBJS = $(CORE_SRCS:.c=.o) $(TEACHER_SRCS:.c=.o) $(PG_SRCS:.c=.o)


PG_CPPFLAGS = -Isrc -I/usr/include/x86_64-linux-gnu/openblas-pthread
# The `omp simd` loops of src/core vectorize (no OpenMP runtime is linked);
# without trapping math a float clamp inside them may become a select, and
# without errno a square root one instruction (AdamW's loop).
VECTOR_CFLAGS = -fopenmp-simd -fno-trapping-math -fno-math-errno
PG_CFLAGS     = $(VECTOR_CFLAGS)
SHLIB_LINK  = -lcurl -ljson-c -lpcre2-8 -lunistring -lopenblas -lm

# pg_regress: inputs in sql/ (beside the install scripts, which it does not
# run), expected outputs in expected/.  The docs_* tests are extracted from
# the ```sql blocks of docs/*.md, so every documented example runs (pages
# without such blocks have no test).
REGRESS_DOCS = $(patsubst docs/%.md,docs_%,$(sort $(shell grep -l '^```sql *$$' docs/*.md)))
REGRESS_SQL  = $(filter-out sql/docs_% sql/$(EXTENSION)--%,$(wildcard sql/*.sql))
REGRESS      = $(REGRESS_DOCS) $(sort $(basename $(notdir $(REGRESS_SQL))))
REGRESS_OPTS = --outputdir=build/regress --load-extension=distill
EXTRA_CLEAN  = build $(patsubst %,sql/%.sql,$(REGRESS_DOCS))

# JIT bitcode of our C would buy nothing and need clang.
override with_llvm = no

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS tracks no header dependencies: any header change rebuilds everything.
# (After the include, so that `all` stays the default goal.)
$(OBJS): $(wildcard src/*/*.h)

installcheck: docs-tests | build/regress

build/regress:
	mkdir -p $@

.PHONY: docs-tests
docs-tests: $(patsubst %,sql/%.sql,$(REGRESS_DOCS))

sql/docs_%.sql: docs/%.md test/extract_sql.awk
	awk -f test/extract_sql.awk $< > $@

# C unit tests of src/core and src/teacher: no PostgreSQL involved.
UNIT_CFLAGS = -std=gnu11 -O2 -g $(VECTOR_CFLAGS) -Wall -Wextra -Wno-unused-parameter -Isrc \
              -I/usr/include/x86_64-linux-gnu/openblas-pthread
UNIT_LIBS   = -lcurl -ljson-c -lpcre2-8 -lunistring -lopenblas -lm -lpthread
UNIT_TESTS  = $(patsubst test/unit/%.c,build/unit/%,$(sort $(wildcard test/unit/test_*.c)))
UNIT_OBJS   = $(patsubst src/%.c,build/unit/obj/%.o,$(CORE_SRCS) $(TEACHER_SRCS))

build/unit/obj/%.o: src/%.c $(wildcard src/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(UNIT_CFLAGS) -c $< -o $@

build/unit/%: test/unit/%.c $(UNIT_OBJS) $(wildcard test/unit/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(UNIT_CFLAGS) $< $(UNIT_OBJS) $(UNIT_LIBS) -o $@

# The checkpoints test_pretrained_reference compares with the golden files
# of test/data/pretrained (README there), made by two standard-library
# scripts; the build fails unless their files and bytes are exactly those
# of the committed sha256 lists (made the same way by regenerate.sh), so a
# golden file is only ever compared with the checkpoint it was made from.
# The test binaries depend on them, so `make unit`, `make unit-sanitize`
# and building one test all make them first.
PRETRAINED_FIXTURES = build/pretrained.stamp
PRETRAINED_INPUTS   = scripts/pretrained/convert.py scripts/pretrained/make_random_hf.py \
                      test/data/stories260K/stories260K.bin test/data/stories260K/tok512.bin \
                      test/data/pretrained/convert.sha256 test/data/pretrained/random_hf.sha256

$(PRETRAINED_FIXTURES): $(PRETRAINED_INPUTS)
	rm -rf build/pretrained build/random_hf
	python3 scripts/pretrained/convert.py test/data/stories260K build/pretrained
	python3 scripts/pretrained/make_random_hf.py build/random_hf
	cd build/pretrained && find . -type f | LC_ALL=C sort | xargs sha256sum | \
		diff ../../test/data/pretrained/convert.sha256 -
	cd build/random_hf && find . -type f | LC_ALL=C sort | xargs sha256sum | \
		diff ../../test/data/pretrained/random_hf.sha256 -
	touch $@

.PHONY: pretrained-fixtures
pretrained-fixtures: $(PRETRAINED_FIXTURES)

build/unit/test_pretrained_reference build/unit-asan/test_pretrained_reference: $(PRETRAINED_FIXTURES)

.PHONY: unit
unit: $(UNIT_TESTS)
	@status=0; for t in $(UNIT_TESTS); do (cd $(CURDIR) && $$t) || status=1; done; exit $$status

# The same unit tests built with AddressSanitizer and UndefinedBehaviorSanitizer
# (LeakSanitizer included), and libFuzzer targets of every parser of outside
# bytes: see test/fuzz/README.md.  clang, for libFuzzer.
SAN_CC     ?= clang
SAN_FLAGS   = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
# the sanitizers keep some `omp simd` loops scalar; no need to say so
SAN_CFLAGS  = $(UNIT_CFLAGS) $(SAN_FLAGS) -Wno-pass-failed

# Compile $< to $@ with the sanitizers and the flags $(1).  clang 14 names
# the dispatcher of a target_clones function "f.ifunc" rather than "f"
# (fixed in clang 15), which leaves f undefined for the other files: the
# last line gives the dispatcher its name back.
define san_compile
	@mkdir -p $(dir $@)
	$(SAN_CC) $(SAN_CFLAGS) $(1) -c $< -o $@
	@nm $@ | sed -n 's/.* i \(.*\)\.ifunc$$/--redefine-sym=\1.ifunc=\1/p' | xargs -r objcopy $@
endef

SAN_UNIT_TESTS = $(patsubst test/unit/%.c,build/unit-asan/%,$(sort $(wildcard test/unit/test_*.c)))
SAN_UNIT_OBJS  = $(patsubst src/%.c,build/unit-asan/obj/%.o,$(CORE_SRCS) $(TEACHER_SRCS))

build/unit-asan/obj/%.o: src/%.c $(wildcard src/*/*.h)
	$(call san_compile,)

build/unit-asan/%: test/unit/%.c $(SAN_UNIT_OBJS) $(wildcard test/unit/*.h)
	@mkdir -p $(dir $@)
	$(SAN_CC) $(SAN_CFLAGS) $< $(SAN_UNIT_OBJS) $(UNIT_LIBS) -o $@

# One target per test, so that `make -j2 -Otarget -k unit-sanitize` runs
# two at a time with whole outputs and still runs all after a failure.
SAN_UNIT_RUNS = $(SAN_UNIT_TESTS:%=%.run)

.PHONY: unit-sanitize $(SAN_UNIT_RUNS)
unit-sanitize: $(SAN_UNIT_RUNS)

$(SAN_UNIT_RUNS): %.run: %
	@cd $(CURDIR) && UBSAN_OPTIONS=print_stacktrace=1 $<

# Fuzzing: `make fuzz` runs each target FUZZ_SECONDS; test/run.sh a few.
# The sources are instrumented for coverage (fuzzer-no-link); each target
# links libFuzzer's main.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS  = $(patsubst test/fuzz/%.c,build/fuzz/%,$(sort $(wildcard test/fuzz/fuzz_*.c)))
FUZZ_OBJS     = $(patsubst src/%.c,build/fuzz/obj/%.o,$(CORE_SRCS) $(TEACHER_SRCS))

build/fuzz/obj/%.o: src/%.c $(wildcard src/*/*.h)
	$(call san_compile,-fsanitize=fuzzer-no-link)

build/fuzz/fuzz_%: test/fuzz/fuzz_%.c $(wildcard test/fuzz/*.h) $(FUZZ_OBJS)
	@mkdir -p $(dir $@)
	$(SAN_CC) $(SAN_CFLAGS) -fsanitize=fuzzer $< $(FUZZ_OBJS) $(UNIT_LIBS) -o $@

.PHONY: fuzz fuzz-build
fuzz-build: $(FUZZ_TARGETS)

fuzz: $(FUZZ_TARGETS)
	bash test/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# The seed corpora in test/fuzz/seeds/<target>, committed: rewrites the
# generated files, leaves any other seed alone.
build/make_seeds: test/fuzz/make_seeds.c test/unit/checkpoint_files.h test/fuzz/fuzz_trainer.h $(UNIT_OBJS)
	$(CC) $(UNIT_CFLAGS) $< $(UNIT_OBJS) $(UNIT_LIBS) -o $@

.PHONY: fuzz-seeds
fuzz-seeds: build/make_seeds
	mkdir -p $(patsubst build/fuzz/%,test/fuzz/seeds/%,$(FUZZ_TARGETS))
	OPENBLAS_NUM_THREADS=1 build/make_seeds test/fuzz/seeds
	python3 test/fuzz/make_seeds.py test/fuzz/seeds
