"""What the served numbers say, for people: the headline figures of each served entity (the
Dagster UI's metadata, the `spine run` summary) and the revenue and customer report.

Reads `serving` only, what consumers read, so every figure shown is one a query can check.
"""
