"""The floor every layer stands on: the platform's settings, read from the environment once
(`settings`), and how a resource problem (a full disk, a locked warehouse) is said in one line
(`resource_errors`). Imports nothing from the rest of the project."""
