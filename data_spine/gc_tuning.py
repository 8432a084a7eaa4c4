"""The garbage collector in a `spine` process that runs the pipeline.

The process loads a few hundred thousand long-lived objects (Dagster, dbt's and dlt's
libraries, the definitions) before the run starts. CPython's collector walks all of them at
every full collection during the run (about 0.3 s each on 2 cores), and several times more as
the interpreter exits: 2.0-2.5 s from the run's last line to the end of the process on an idle
machine, more on a busy one. Frozen (`gc.freeze`) once they are loaded, they are left out of
those walks: they are modules, classes and the definitions, which live as long as the process,
and reference counting frees everything else as before. Measured on a `tiny` run: the exit
took 0.9 s instead of 2.3 s.

Freezing later, or again at exit, would also freeze what a run's connections still hold (DuckDB
objects kept by a SQLAlchemy dialect, say), which then outlives the interpreter and makes
DuckDB's binding library print "leaked instance" lines at every exit.
"""

from __future__ import annotations

import gc


def freeze_loaded() -> None:
    """Leave what is loaded so far out of later collections: call once the libraries and the
    definitions are loaded, before the run opens a warehouse connection. Once per process: a
    process that runs the job again (a test) does not freeze each run's leftovers."""
    if gc.get_freeze_count() == 0:
        gc.freeze()
