"""Steps executed by Celery workers: the executor a run sends its steps with, configured from the
same settings as the Celery app a worker takes them with (`celery_worker.py`), so both agree.

The executor is dagster-celery's (each step a Celery task on the queue `SPINE_CELERY_QUEUE` of
the broker `SPINE_CELERY_BROKER_URL`, its events sent back through `SPINE_CELERY_BACKEND_URL`)
with two things the spine's in-process executor does and dagster-celery 0.29 does not
(`SpineCeleryExecutor` gives the plan it executes both):

- `step_dependency_config`: a step starts as soon as the outputs it reads exist, even when the
  step that made them failed afterwards (a failed dbt model holds back only the entities built
  from it); dagster-celery would wait for every upstream step to succeed.
- `dagster/priority`: a step of lower priority starts only once no step of higher priority waits
  or runs. In process, steps run one at a time, highest priority first, and the spine relies on
  it: the scorecard and the reports (priority -1) come after the publishing steps, which are not
  upstream of them (a held-back entity fails its publishing step, and the scorecard must still
  be written). dagster-celery ignores the tag (and warns about it); on parallel workers the
  scorecard would otherwise score the served tables while they are being published. The
  priority also becomes the Celery message's (`dagster-celery/priority`).

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

import warnings
from collections.abc import Sequence
from typing import Any

import dagster as dg
from dagster._core.execution.plan.active import ActiveExecution
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.execution.plan.step import ExecutionStep
from dagster._core.execution.retries import RetryMode
from dagster._core.execution.step_dependency_config import StepDependencyConfig, get_step_dependency_config_field
from dagster._core.storage.tags import PRIORITY_TAG
from dagster_celery.defaults import task_default_priority
from dagster_celery.executor import CELERY_CONFIG, CeleryExecutor
from dagster_celery.tags import DAGSTER_CELERY_STEP_PRIORITY_TAG

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


def _priority(step) -> int:
    try:
        return int(step.tags.get(PRIORITY_TAG, 0))
    except ValueError:
        return 0


def _with_celery_priority(step):
    """The step, its `dagster/priority` also as the Celery priority of its message (around
    dagster-celery's default, which Celery orders highest first)."""
    if not isinstance(step, ExecutionStep) or PRIORITY_TAG not in step.tags:
        return step
    if DAGSTER_CELERY_STEP_PRIORITY_TAG in step.tags:
        return step
    return step._replace(
        tags={**step.tags, DAGSTER_CELERY_STEP_PRIORITY_TAG: str(task_default_priority + _priority(step))}
    )


class _PriorityOrderedExecution(ActiveExecution):
    """Dagster's bookkeeping of a run's steps, handing out a step only once no step of a higher
    `dagster/priority` is waiting to start or running (see the module)."""

    def get_steps_to_execute(self, limit: int | None = None) -> Sequence[ExecutionStep]:
        self._update()
        pending = [*self._executable, *self._in_flight]
        top = max((_priority(self.get_step_by_key(key)) for key in pending), default=0)
        held = [key for key in self._executable if _priority(self.get_step_by_key(key)) < top]
        self._executable = [key for key in self._executable if key not in held]
        try:
            return super().get_steps_to_execute(limit)
        finally:
            self._executable.extend(held)


class _SpinePlan(ExecutionPlan):
    """The run's execution plan, its steps carrying their Celery priority, executed with the
    step-dependency setting and priority order of the spine (dagster-celery's execution loop
    starts the plan without either)."""

    step_dependency_config: StepDependencyConfig

    @classmethod
    def of(cls, plan: ExecutionPlan, step_dependency_config: StepDependencyConfig) -> "_SpinePlan":
        steps = {handle: _with_celery_priority(step) for handle, step in plan.step_dict.items()}
        made = cls._make(plan)._replace(step_dict=steps, step_dict_by_key={s.key: s for s in steps.values()})
        made.step_dependency_config = step_dependency_config
        return made

    def start(
        self,
        retry_mode: RetryMode,
        sort_key_fn=None,
        max_concurrent: int | None = None,
        tag_concurrency_limits=None,
        instance_concurrency_context=None,
        step_dependency_config: StepDependencyConfig | None = None,
    ) -> ActiveExecution:
        return _PriorityOrderedExecution(
            self,
            retry_mode,
            sort_key_fn,
            max_concurrent,
            tag_concurrency_limits,
            instance_concurrency_context=instance_concurrency_context,
            step_dependency_config=step_dependency_config or self.step_dependency_config,
        )


class SpineCeleryExecutor(CeleryExecutor):
    """dagster-celery's executor, with the spine's step-dependency setting and priority order
    (see the module)."""

    def __init__(self, step_dependency_config: StepDependencyConfig, **kwargs: Any):
        super().__init__(**kwargs)
        self._step_dependency_config = step_dependency_config

    @property
    def step_dependency_config(self) -> StepDependencyConfig:
        return self._step_dependency_config

    def execute(self, plan_context, execution_plan: ExecutionPlan):
        # dagster-celery makes its step task anew for every step it sends; Celery keeps the first
        # and warns about each other one.
        warnings.filterwarnings("ignore", message="Task name 'execute_plan' is already registered")
        return super().execute(plan_context, _SpinePlan.of(execution_plan, self._step_dependency_config))


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
