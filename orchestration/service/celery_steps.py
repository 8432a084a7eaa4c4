"""Steps executed by Celery workers: the executor a run sends its steps with, configured from the
same settings as the Celery app a worker takes them with (`celery_worker.py`), so both agree.

The executor is dagster-celery's (each step a Celery task on the queue `SPINE_CELERY_QUEUE` of
the broker `SPINE_CELERY_BROKER_URL`, its events sent back through `SPINE_CELERY_BACKEND_URL`)
with one thing added: dagster-celery 0.29 has no `step_dependency_config`, so a step would wait
for every upstream step to succeed, where the spine's in-process executor starts a step as soon
as the outputs it reads exist (a failed dbt model holds back only the entities built from it).
`SpineCeleryExecutor` hands that setting to the plan, which is where Dagster's own executors
apply it.

Celery settings both sides share (`app_config`):

- `task_acks_late`: the broker forgets a step only once a worker has finished it. A worker that
  dies or loses its connection mid-step (killed, machine lost) leaves the step's message
  unacknowledged, and the broker hands it to another worker, which runs the step again from
  its start. With Celery's default (acknowledged on receipt) the message is gone with the
  worker and the run waits for it forever.
- `task_reject_on_worker_lost` stays off: when only the process running a step dies and its
  worker lives on (the kernel's out-of-memory killer, most likely), the step fails and the run
  with it, naming the step and `WorkerLostError`, rather than being sent out again to die the
  same way on every worker in turn.
- `worker_cancel_long_running_tasks_on_connection_loss`: a worker cut off from the broker stops
  the steps it runs, since the broker gives them to another worker; otherwise both would write.
- `worker_prefetch_multiplier` 1 (dagster-celery's default, kept): a busy worker reserves no
  further step that an idle worker could run.
"""

from typing import Any

import dagster as dg
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.execution.retries import RetryMode
from dagster._core.execution.step_dependency_config import StepDependencyConfig, get_step_dependency_config_field
from dagster_celery.executor import CELERY_CONFIG, CeleryExecutor

from data_spine.settings import Settings


def app_config(cfg: Settings) -> dict[str, Any]:
    """Celery settings of the steps' tasks, the same for the run that sends them and the workers
    that run them (see the module)."""
    return {
        "task_default_queue": cfg.celery_queue,
        "task_acks_late": True,
        "task_reject_on_worker_lost": False,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_prefetch_multiplier": 1,
        "broker_connection_retry_on_startup": True,
    }


def executor_config(cfg: Settings, step_dependency_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Config of `spine_celery_executor` for these settings."""
    config: dict[str, Any] = {
        "broker": cfg.celery_broker_url,
        "backend": cfg.celery_backend_url,
        "config_source": app_config(cfg),
    }
    if step_dependency_config is not None:
        config["step_dependency_config"] = step_dependency_config
    return config


class _PlanWithDependencyConfig(ExecutionPlan):
    """An execution plan whose execution starts with a step-dependency setting of its own
    (dagster-celery's execution loop starts the plan without one)."""

    step_dependency_config: StepDependencyConfig

    def start(self, *args, **kwargs):
        kwargs.setdefault("step_dependency_config", self.step_dependency_config)
        return super().start(*args, **kwargs)


class SpineCeleryExecutor(CeleryExecutor):
    """dagster-celery's executor, starting a step when the outputs it reads exist if so
    configured (see the module)."""

    def __init__(self, step_dependency_config: StepDependencyConfig, **kwargs: Any):
        super().__init__(**kwargs)
        self._step_dependency_config = step_dependency_config

    @property
    def step_dependency_config(self) -> StepDependencyConfig:
        return self._step_dependency_config

    def execute(self, plan_context, execution_plan: ExecutionPlan):
        plan = _PlanWithDependencyConfig._make(execution_plan)
        plan.step_dependency_config = self._step_dependency_config
        return super().execute(plan_context, plan)


@dg.executor(
    name="spine_celery",
    config_schema={**CELERY_CONFIG, "step_dependency_config": get_step_dependency_config_field()},
    requirements=dg.multiple_process_executor_requirements(),
)
def spine_celery_executor(init_context: dg.InitExecutorContext) -> SpineCeleryExecutor:
    config = init_context.executor_config
    return SpineCeleryExecutor(
        step_dependency_config=StepDependencyConfig.from_config(config.get("step_dependency_config")),
        broker=config.get("broker"),
        backend=config.get("backend"),
        config_source=config.get("config_source"),
        include=config.get("include"),
        retries=RetryMode.from_config(config["retries"]),
    )
