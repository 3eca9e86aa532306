# distill - PostgreSQL extension (PGXS build)

EXTENSION   = distill
MODULE_big  = distill
DATA        = sql/distill--0.1.0.sql
PGFILEDESC  = "distill - distilling step-by-step inside PostgreSQL"

CORE_SRCS    = $(sort $(wildcard src/core/*.c))
TEACHER_SRCS = $(sort $(wildcard src/teacher/*.c))
PG_SRCS      = $(sort $(wildcard src/pg/*.c))
OBJS = $(CORE_SRCS:.c=.o) $(TEACHER_SRCS:.c=.o) $(PG_SRCS:.c=.o)


PG_CPPFLAGS = -Isrc -I/usr/include/x86_64-linux-gnu/openblas-pthread
# The `omp simd` loops of src/core vectorize (no OpenMP runtime is linked);
# without trapping math a float clamp inside them may become a select.
VECTOR_CFLAGS = -fopenmp-simd -fno-trapping-math
PG_CFLAGS     = $(VECTOR_CFLAGS)
SHLIB_LINK  = -lcurl -ljson-c -lopenblas -lm

# pg_regress: inputs in test/sql, expected outputs in test/expected.
# The docs_* tests are extracted from the ```sql blocks of docs/*.md, so
# every documented example runs (pages without such blocks have no test).
REGRESS_DOCS = $(patsubst docs/%.md,docs_%,$(sort $(shell grep -l '^```sql *$$' docs/*.md)))
REGRESS      = $(REGRESS_DOCS) $(sort $(basename $(notdir $(filter-out test/sql/docs_%,$(wildcard test/sql/*.sql)))))
REGRESS_OPTS = --inputdir=test --outputdir=build/regress --load-extension=distill
EXTRA_CLEAN  = build $(patsubst %,test/sql/%.sql,$(REGRESS_DOCS))

# PGXS tracks no header dependencies: any header change rebuilds everything.
$(OBJS): $(wildcard src/*/*.h)

# JIT bitcode of our C would buy nothing and need clang.
override with_llvm = no

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

installcheck: docs-tests | build/regress

build/regress:
	mkdir -p $@

.PHONY: docs-tests
docs-tests: $(patsubst %,test/sql/%.sql,$(REGRESS_DOCS))

test/sql/docs_%.sql: docs/%.md test/extract_sql.awk
	awk -f test/extract_sql.awk $< > $@

# C unit tests of src/core and src/teacher: no PostgreSQL involved.
UNIT_CFLAGS = -std=gnu11 -O2 -g $(VECTOR_CFLAGS) -Wall -Wextra -Wno-unused-parameter -Isrc \
              -I/usr/include/x86_64-linux-gnu/openblas-pthread
UNIT_LIBS   = -lcurl -ljson-c -lopenblas -lm -lpthread
UNIT_TESTS  = $(patsubst test/unit/%.c,build/unit/%,$(sort $(wildcard test/unit/test_*.c)))
UNIT_OBJS   = $(patsubst src/%.c,build/unit/obj/%.o,$(CORE_SRCS) $(TEACHER_SRCS))

build/unit/obj/%.o: src/%.c $(wildcard src/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(UNIT_CFLAGS) -c $< -o $@

build/unit/%: test/unit/%.c $(UNIT_OBJS) test/unit/unit.h
	@mkdir -p $(dir $@)
	$(CC) $(UNIT_CFLAGS) $< $(UNIT_OBJS) $(UNIT_LIBS) -o $@

.PHONY: unit
unit: $(UNIT_TESTS)
	@status=0; for t in $(UNIT_TESTS); do (cd $(CURDIR) && $$t) || status=1; done; exit $$status
