"""The floor every layer stands on: the platform's settings, read from the environment once
(`settings`), the one HTTP client every outgoing call goes through (`http_client`), and how a
resource problem (a full disk, a locked warehouse) is said in one line (`resource_errors`), and
the garbage collector of a process that runs the pipeline (`gc_tuning`). Imports nothing from
the rest of the project."""
