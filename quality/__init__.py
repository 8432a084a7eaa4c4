"""What the platform does with audit results and source readings: write-audit-publish
(`publishing`), the data-quality scorecard (`scorecard`), source monitors (`source_monitors`),
alert conditions and their state machine (`alert_conditions`) and alert delivery to the log,
a webhook and Slack (`alert_delivery`). Reads the suites from `expectations`; knows nothing
of Dagster."""
