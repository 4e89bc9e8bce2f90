# The two commands: `make run` (set up, run the pipeline, serve) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
EMR_VENV := .venv-emr
# The cluster's Python (emr.CLUSTER_PYTHON) where this machine has it.
EMR_PYTHON ?= $(shell command -v python3.11 || echo $(PYTHON))
PY := $(VENV)/bin/python

# The variable's value, or the default when it is unset or empty: an empty export means unset, as settings.py reads
# it (`?=` would keep the empty value, and Dagster's files would go to /dagster). `override`, so an empty value on
# the command line (`make run FARES_HOME=`) means unset too.
or_default = $(if $(strip $($(1))),$(strip $($(1))),$(2))

export DAGSTER_HOME := $(CURDIR)
override FARES_HOME := $(call or_default,FARES_HOME,$(CURDIR)/.fares)
override FARES_PG_PORT := $(call or_default,FARES_PG_PORT,54329)
# dagster-postgres speaks psycopg2; SQLAlchemy 2.1 would pick psycopg 3 for a bare postgresql:// URL.
DAGSTER_PG_URL := postgresql+psycopg2://fares@127.0.0.1:$(FARES_PG_PORT)/dagster
override FARES_DAGSTER_PG_URL := $(call or_default,FARES_DAGSTER_PG_URL,$(DAGSTER_PG_URL))
override FARES_DAGSTER_ARTIFACTS := $(call or_default,FARES_DAGSTER_ARTIFACTS,$(FARES_HOME)/dagster)
override FARES_DAGSTER_COMPUTE_LOGS := $(call or_default,FARES_DAGSTER_COMPUTE_LOGS,$(FARES_HOME)/dagster/logs)
override SPARK_LOCAL_IP := $(call or_default,SPARK_LOCAL_IP,127.0.0.1)
override PYSPARK_PYTHON := $(call or_default,PYSPARK_PYTHON,$(CURDIR)/$(VENV)/bin/python)
export FARES_HOME FARES_PG_PORT FARES_DAGSTER_PG_URL FARES_DAGSTER_ARTIFACTS FARES_DAGSTER_COMPUTE_LOGS SPARK_LOCAL_IP \
  PYSPARK_PYTHON

.PHONY: setup system-deps run pipeline test dsn validate dagster bench clean

setup: system-deps $(VENV)/.installed

# Debian packages besides Python's (venv, Java, PostgreSQL, its JDBC driver; Chromium for the tests, wrk for the
# benches): installed when missing, as root; otherwise the script names them and stops. Checked before the venv is
# made, since making it needs python3-venv.
# Checked once per make, for every goal given (`make run test` checks the tests' packages too).
system-deps:
	@PYTHON=$(PYTHON) bash scripts/install-system-deps.sh $(filter test bench,$(MAKECMDGOALS))

# Reinstalls only when setup.py or the tested versions (constraints.txt) change, so a second `make run` starts at once.
# After the Debian packages (making the venv needs python3-venv), also under `make -j` and when a file goal is named
# alone.
$(VENV)/.installed: setup.py constraints.txt | system-deps
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]' -c constraints.txt
	touch $@

# The Spark jobs as EMR's default release runs them: its Spark and only the step's packages, beside this project's
# (fare_assets_tests/test_emr_cluster_spark.py runs the jobs on both and compares).
$(EMR_VENV)/.installed: setup.py fare_assets/structuring/emr.py | $(VENV)/.installed
	$(EMR_PYTHON) -m venv $(EMR_VENV)
	requirements=$$($(PY) -m fare_assets.structuring.emr requirements) && \
		$(EMR_VENV)/bin/pip install --quiet $$requirements
	touch $@

run: setup
	$(PY) -m fare_assets.pipeline --serve

pipeline: setup
	$(PY) -m fare_assets.pipeline

# `make test TESTS=fare_assets_tests/test_webapp.py` runs one file.
TESTS ?= fare_assets_tests
test: setup $(EMR_VENV)/.installed
	$(PY) -m pytest $(TESTS)

# Starts the embedded cluster (left running, as by validate and dagster) so `psql "$(make -s dsn)"` connects.
dsn: setup
	@$(PY) -m fare_assets.storing.postgres start >/dev/null
	@$(PY) -m fare_assets.storing.postgres dsn

# The Dagster instance (dagster.yaml) keeps its storage in the embedded cluster: start it first.
validate: setup
	@$(PY) -m fare_assets.storing.postgres start >/dev/null
	$(VENV)/bin/dagster definitions validate -w workspace.yaml

# `make dagster ARGS="run delete RUN_ID"`: the dagster CLI on this instance; dagster.yaml reads variables set above.
dagster: setup
	@$(PY) -m fare_assets.storing.postgres start >/dev/null
	$(VENV)/bin/dagster $(ARGS)

# utf8_check_cost runs its Spark 3.5 side in the EMR venv.
bench: setup $(EMR_VENV)/.installed
	$(PY) bench/structuring_throughput.py
	$(PY) bench/producer_throughput.py
	$(PY) bench/collector_overhead.py
	$(PY) bench/warehouse_load.py
	$(PY) bench/warehouse_backfill.py --history 3000000
	$(PY) bench/structuring_vs_duckdb.py
	$(PY) bench/utf8_check_cost.py
	$(PY) bench/option_count_check_cost.py
	$(PY) bench/structuring_growth.py
	$(PY) bench/hourly_lake_reads.py
	$(PY) bench/trip_history_depth.py
	$(PY) bench/fare_page_load.py
	$(PY) bench/advisor_evaluation.py

# The cluster's files may sit outside FARES_HOME (as root, when the postgres user cannot reach the project): destroy
# follows its link.
clean:
	@home=$$(realpath -m "$(FARES_HOME)"); \
	if [ -z "$(FARES_HOME)" ] || [ "$$home" = / ] || [ "$$home" = "$$(realpath -m ~)" ] || \
		case "$(CURDIR)/" in "$$home"/*) true;; *) false;; esac; then \
		echo "refusing to delete FARES_HOME=$(FARES_HOME): the root, the home folder, the project or a folder above it" >&2; \
		exit 1; fi
	-$(PY) -m fare_assets.storing.postgres destroy
	rm -rf "$(FARES_HOME)"
