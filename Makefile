PYTHON ?= .venv/bin/python

.PHONY: bench bench-small

# Performance figures against the targets at the `large` preset (≈50k companies, 10M events);
# generates the company into data/bench the first time (several minutes), reuses it after.
bench:
	$(PYTHON) -m benchmarks --preset large

# A quick run of the same harness at `small`, to check it works.
bench-small:
	$(PYTHON) -m benchmarks --preset small
