"""Benchmarks: how fast, and in how much memory, the platform ingests and validates a `large` company.

`python -m benchmarks` (or `make bench`) measures, each step in its own process:

    generate   writing the sample company                         target: under 10 minutes
    usage      the usage-events connector into a fresh warehouse  target: ≥ 0.8× DuckDB's own
    duckdb     DuckDB reading the same landing files natively       (the reference for usage)
    stripe, hubspot, zendesk
               the API connectors, end to end over HTTP from the   target: ≥ 50k records/s
               local vendor APIs (served by another process)
    every ingestion step                                           target: peak RSS ≤ 2 GB
    build      all sources into one warehouse and `dbt build`        (what the suites need)
    validate <entity>
               one entity's suite, metrics computed in DuckDB       target for usage_event:
                                                                    peak RSS ≤ 1.5 GB

Figures are printed, and written to `<data dir>/<preset>/results.json`; they are never
asserted, because wall time depends on whatever else the machine is doing.
"""
