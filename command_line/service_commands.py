"""`spine service ...`: the spine as a service, one process per command, each in the foreground
(for systemd, a container or a terminal each), configured by the environment alone.

spine service instance      put the service's dagster.yaml into DAGSTER_HOME, create its database
spine service code-server   load the definitions and serve them (and launch runs) over gRPC
spine service webserver     the Dagster UI, asking the code server
spine service daemon        schedules, sensors, the run queue and run monitoring
spine service worker        a Celery worker that executes steps

README.md, "Running as a service" tells the whole layout: which process runs where, every
variable, adding a worker on another machine, backups.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from data_spine.settings import PROJECT_ROOT, settings
from data_spine.warehouse import without_password

LOCATION_NAME = "data_spine"
DEFINITIONS_MODULE = "orchestration.definitions"
CODE_SERVER_HOST, CODE_SERVER_PORT = "127.0.0.1", 4266


def _service_home() -> Path:
    """DAGSTER_HOME of the service: never the project's own `.dagster_home`, whose SQLite
    instance `spine run` and `spine dev` use."""
    home = settings().dagster_home
    if home.resolve() == (PROJECT_ROOT / ".dagster_home").resolve():
        raise click.ClickException(
            f"DAGSTER_HOME is the project's own instance ({home}, SQLite files for `spine run` and `spine dev`): "
            "set DAGSTER_HOME to the service's folder, e.g. /var/lib/spine/dagster"
        )
    return home


def _check_url() -> str:
    from orchestration.service.instance_setup import url_problem

    url = settings().dagster_postgres_url
    problem = url_problem(url)
    if problem:
        raise click.ClickException(problem)
    return url


def _service_instance_home() -> Path:
    """DAGSTER_HOME, checked to hold the service's instance (on PostgreSQL)."""
    import yaml

    home = _service_home()
    _check_url()
    config = home / "dagster.yaml"
    try:
        storage = (yaml.safe_load(config.read_text()) or {}).get("storage") or {}
    except FileNotFoundError:
        storage = {}
    if "postgres" not in storage:
        raise click.ClickException(
            f"{config} is not the service's instance (its storage is not PostgreSQL): "
            "run `spine service instance` first"
        )
    return home


def _prepare_dbt() -> None:
    """The dbt manifest the definitions load, parsed when the dbt project changed (loading the
    definitions runs nothing)."""
    from orchestration.dbt_manifest import prepare, stale

    if stale():
        click.echo("Parsing the dbt project (dbt parse) ...")
        prepare()


def _exec(argv: list[str], env: dict[str, str]) -> None:
    """Become the Dagster process, so that the signals a supervisor sends (SIGTERM to stop) reach
    it and nothing of this process is left to outlive it."""
    click.echo(" ".join(argv), err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.chdir(PROJECT_ROOT)
    os.execve(argv[0], argv, env)


def _dagster_script(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _executor_line() -> str:
    cfg = settings()
    if cfg.executor == "celery":
        return (
            f"Runs send their steps to the Celery queue {cfg.celery_queue!r} at "
            f"{without_password(cfg.celery_broker_url)} (SPINE_EXECUTOR=celery)."
        )
    return "Runs execute their steps in their own process (SPINE_EXECUTOR=in_process; celery sends them to workers)."


@click.group()
def service() -> None:
    """The spine as a service: Dagster on PostgreSQL, each process started on its own, steps on
    Celery workers (README.md, "Running as a service")."""


@service.command()
@click.option("--print", "print_only", is_flag=True, help="Print the instance's dagster.yaml and change nothing.")
def instance(print_only: bool) -> None:
    """Put the service's dagster.yaml into DAGSTER_HOME, create the database
    SPINE_DAGSTER_POSTGRES_URL names when it is missing, and create or migrate Dagster's tables
    in it. Safe to run again (after an upgrade of Dagster, it migrates)."""
    from orchestration.service.instance_setup import (
        INSTANCE_YAML,
        create_database,
        database_name,
        open_instance,
        write_instance_yaml,
    )

    if print_only:
        click.echo(INSTANCE_YAML.read_text(), nl=False)
        return
    home = _service_home()
    url = _check_url()
    try:
        created = create_database(url)
    except Exception as exc:  # the server's own words say what is wrong (down, refused, no right)
        said = " ".join(str(exc).split())
        raise click.ClickException(f"cannot reach the instance's database at {without_password(url)}: {said}") from None
    click.echo(f"Database {database_name(url)} {'created' if created else 'exists'} ({without_password(url)}).")
    path, changed = write_instance_yaml(home)
    click.echo(f"Instance configuration {'written to' if changed else 'already in'} {path}.")
    with open_instance(home) as dagster_instance:  # opening it creates the tables
        dagster_instance.upgrade(print_fn=lambda line: None)
    click.echo("Dagster's tables are ready (runs, event log, schedules).")


@service.command("code-server")
@click.option("--host", envvar="SPINE_CODE_SERVER_HOST", default=CODE_SERVER_HOST, show_default=True, show_envvar=True)
@click.option(
    "--port",
    envvar="SPINE_CODE_SERVER_PORT",
    type=click.IntRange(1, 65535),
    default=CODE_SERVER_PORT,
    show_default=True,
    show_envvar=True,
)
@click.option(
    "--module", default=DEFINITIONS_MODULE, hidden=True, help="The module whose definitions are served (tests: a toy)."
)
def code_server(host: str, port: int, module: str) -> None:
    """Load the spine's definitions and serve them over gRPC to the webserver and the daemon;
    the runs they launch are started here, as processes of this machine."""
    home = _service_instance_home()
    if module == DEFINITIONS_MODULE:
        _prepare_dbt()
    click.echo(_executor_line())
    argv = [_dagster_script("dagster"), "code-server", "start", "-m", module]
    argv += ["--location-name", LOCATION_NAME, "-h", host, "-p", str(port)]
    _exec(argv, {**os.environ, "DAGSTER_HOME": str(home)})


def _workspace_env(home: Path) -> dict[str, str]:
    """The environment of the webserver and the daemon: the workspace file reads the code
    server's address from it, given here when unset."""
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    env.setdefault("SPINE_CODE_SERVER_HOST", CODE_SERVER_HOST)
    env.setdefault("SPINE_CODE_SERVER_PORT", str(CODE_SERVER_PORT))
    return env


@service.command()
@click.option("--host", envvar="SPINE_WEBSERVER_HOST", default="127.0.0.1", show_default=True, show_envvar=True)
@click.option(
    "--port",
    envvar="SPINE_WEBSERVER_PORT",
    type=click.IntRange(1, 65535),
    default=3000,
    show_default=True,
    show_envvar=True,
)
def webserver(host: str, port: int) -> None:
    """The Dagster UI, reading the code location from the code server."""
    from orchestration.service.instance_setup import WORKSPACE_YAML

    home = _service_instance_home()
    argv = [_dagster_script("dagster-webserver"), "-w", str(WORKSPACE_YAML), "-h", host, "-p", str(port)]
    _exec(argv, _workspace_env(home))


@service.command()
def daemon() -> None:
    """Dagster's daemon: the schedule, the sensors, the run queue (it launches queued runs through
    the code server) and run monitoring. Run it on the code server's machine: run monitoring
    judges whether a run's process is alive by looking at this machine's processes."""
    from orchestration.service.instance_setup import WORKSPACE_YAML

    home = _service_instance_home()
    argv = [_dagster_script("dagster-daemon"), "run", "-w", str(WORKSPACE_YAML)]
    _exec(argv, _workspace_env(home))


@service.command()
@click.option(
    "--name",
    envvar="SPINE_CELERY_WORKER_NAME",
    default="spine",
    show_default=True,
    show_envvar=True,
    help="The worker's name, before @host: two workers on one machine need two names.",
)
@click.option(
    "--concurrency",
    envvar="SPINE_CELERY_CONCURRENCY",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    show_envvar=True,
    help="Steps this worker runs at once, each in a process of its own.",
)
@click.option(
    "--preload",
    multiple=True,
    default=[DEFINITIONS_MODULE],
    show_default=True,
    metavar="MODULE",
    help="Code imported before the worker takes steps, so its step processes start with it loaded.",
)
@click.option("--loglevel", default="INFO", show_default=True, type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]))
def worker(name: str, concurrency: int, preload: tuple[str, ...], loglevel: str) -> None:
    """A Celery worker that executes the steps runs send to the queue SPINE_CELERY_QUEUE of the
    broker SPINE_CELERY_BROKER_URL. It needs the project's code (and its dbt manifest) and the
    same SPINE_* environment as the code server; any number may run, on any machine.

    Stopping it (SIGTERM, Ctrl-C) lets the steps under way finish first; a second signal stops
    at once, and the broker hands the unfinished steps to another worker."""
    import importlib

    from orchestration.service.celery_worker import worker_app

    _check_url()
    cfg = settings()
    if DEFINITIONS_MODULE in preload:
        _prepare_dbt()
    for module in preload:
        importlib.import_module(module)
    click.echo(f"Celery worker {name}: queue {cfg.celery_queue!r} at {without_password(cfg.celery_broker_url)}.")
    argv = ["worker", f"--loglevel={loglevel}", "-n", f"{name}@%h", "-Q", cfg.celery_queue]
    argv += [f"--concurrency={concurrency}", "--prefetch-multiplier=1", "--without-gossip", "--without-mingle"]
    os.chdir(PROJECT_ROOT)
    worker_app(cfg).worker_main(argv)
