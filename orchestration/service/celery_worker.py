"""The Celery app a worker of the service runs (`spine service worker`): dagster-celery's app and
step task, with the queue, broker, backend and settings a run sends its steps with
(`celery_steps.app_config`). Apart from the executor so that loading the definitions does not
import Celery itself."""

from celery import Celery
from dagster._core.execution.retries import RetryMode
from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from data_spine.settings import Settings
from orchestration.service.celery_steps import app_config


def worker_app(cfg: Settings) -> Celery:
    """The Celery app of a worker: the executor's own app (queue, broker, backend and settings
    as a run sends steps with them) with dagster-celery's step task, as `dagster_celery.app` is
    for `dagster-celery worker start`."""
    sender = CeleryExecutor(
        retries=RetryMode.DISABLED,
        broker=cfg.celery_broker_url,
        backend=cfg.celery_backend_url,
        config_source=app_config(cfg),
    )
    app = make_app(sender.app_args())
    create_task(app)
    return app
