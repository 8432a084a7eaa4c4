PYTHON ?= .venv/bin/python

.PHONY: bench bench-large bench-small bench-targets

# Performance figures against the targets at the `large` preset (≈50k companies, 10M events);
# generates the company into data/bench the first time (several minutes), reuses it after. Then
# the whole spine at `medium` on each warehouse target, side by side (bench-targets).
bench: bench-large bench-targets

bench-large:
	$(PYTHON) -m benchmarks --preset large

# A quick run of the same harness at `small`, to check it works.
bench-small:
	$(PYTHON) -m benchmarks --preset small

# The whole spine at `medium` on each warehouse target, side by side: the embedded DuckDB file
# and PostgreSQL (a database of its own on the local server; SPINE_BENCH_POSTGRES_URL for another).
bench-targets:
	$(PYTHON) -m benchmarks --preset medium --only targets
