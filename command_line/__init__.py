"""The `spine` command line, the top layer: the only code that sees every other (the sample
company, the connectors, the quality package and the Dagster definitions)."""
