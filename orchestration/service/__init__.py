"""The spine as a service: Dagster's instance on PostgreSQL (`dagster.yaml` here), the code
server the webserver and the daemon reach over gRPC (`workspace.yaml`), and steps executed by
Celery workers on any machine (`celery_steps.py`). README.md beside this file tells how to run
each process; `spine service` starts them."""
