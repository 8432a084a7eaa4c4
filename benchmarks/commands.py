"""`python -m benchmarks`: measure the platform against its performance targets."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import click

from benchmarks import report
from benchmarks.measure import Measurement, run_step
from data_spine.settings import PROJECT_ROOT
from data_spine.warehouse import Warehouse
from expectations.suites import SUITES
from sample_company.presets import PRESETS
from sample_company.vendor_api.process import VendorApiProcess

GROUPS = ("generate", "usage", "api", "quality", "daily", "targets")
# What runs without `--only`: the targets' comparison is its own make target (`bench-targets`).
DEFAULT_GROUPS = GROUPS[:-1]
COMPANY_MARKER = "company.json"


def generator_version() -> str | None:
    """The generator's commit, plus a digest of uncommitted edits to it: a company made by other
    code is regenerated rather than measured as if it were current."""

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            return None

    # The local vendor APIs live beside the generator but do not change what it writes.
    paths = ("--", "sample_company", ":(exclude)sample_company/vendor_api")
    commit = git("log", "-1", "--format=%H", *paths)
    if commit is None:
        return None
    edits = git("diff", "HEAD", *paths) or b""
    return commit.decode().strip() + (f"+{hashlib.sha1(edits).hexdigest()[:12]}" if edits else "")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


class Bench:
    """Where one preset's company and runs live under the benchmark data folder."""

    def __init__(self, data_dir: Path, preset: str, seed: int, memory_cap_mb: float | None = None):
        self.root = data_dir / preset
        self.memory_cap_mb = memory_cap_mb
        self.preset, self.seed = preset, seed
        self.landing = self.root / "landing" / "usage_events"
        self.results: dict[str, Measurement] = {}

    def env(self, data_dir: Path) -> dict[str, str]:
        # Every path is set, so a SPINE_* variable of the caller never points a step elsewhere.
        return {
            "SPINE_DATA_DIR": str(data_dir),
            "SPINE_WAREHOUSE": str(data_dir / "warehouse.duckdb"),
            "SPINE_LANDING_DIR": str(self.landing),
            "SPINE_PRESET": self.preset,
            "SPINE_SEED": str(self.seed),
        }

    def run(self, name: str, argv: list[str]) -> Measurement:
        """Run a step against a fresh warehouse and dlt state in `runs/<name>`."""
        run_dir = self.root / "runs" / name
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        return self._measure(name, argv, self.env(run_dir), run_dir / "result.json")

    def _measure(self, name: str, argv: list[str], env: dict[str, str], result: Path) -> Measurement:
        click.echo(f"» {name}: starting (load average {_load()})")
        m = run_step(name, argv, env, result, log=click.echo, memory_cap_mb=self.memory_cap_mb)
        if m.error:
            click.echo(
                f"» {name}: FAILED after {m.seconds:,.1f}s, {m.error}; peak RSS {m.peak_rss_mb:,.0f} MB "
                f"(load average {_load()})"
            )
        else:
            click.echo(
                f"» {name}: {m.records:,} records in {m.seconds:,.1f}s = {m.rate:,.0f} records/s, "
                f"peak RSS {m.peak_rss_mb:,.0f} MB (load average {_load()})"
            )
        self.results[name] = m
        return m

    def company(self) -> dict | None:
        """The manifest of the generated company, if it is this preset and seed from this generator."""
        from sample_company.generate import read_manifest

        try:
            manifest = read_manifest(self.root / "sources")
            marker = json.loads((self.root / COMPANY_MARKER).read_text())
        except FileNotFoundError:
            return None
        if marker != {"preset": self.preset, "seed": self.seed, "generator": generator_version()}:
            return None
        return manifest

    def generate(self) -> Measurement:
        (self.root / COMPANY_MARKER).unlink(missing_ok=True)
        env = self.env(self.root)
        m = self._measure(
            "generate",
            ["generate", "--preset", self.preset, "--seed", str(self.seed)],
            env,
            self.root / "runs" / "generate" / "result.json",
        )
        if m.error:
            return m
        marker = {"preset": self.preset, "seed": self.seed, "generator": generator_version()}
        (self.root / COMPANY_MARKER).write_text(json.dumps(marker) + "\n")
        return m

    def usage(self) -> None:
        # DuckDB first: both then read the landing files from a page cache the generator warmed.
        self.run("duckdb", ["duckdb"])
        self.run("usage", ["usage"])

    def api(self) -> None:
        click.echo(f"» starting the vendor APIs in their own process (load average {_load()})")
        with VendorApiProcess(self.root / "sources", warm=True) as server:
            click.echo(f"  vendor APIs at {server.url}, records read in {server.load_seconds:,.1f}s (not timed)")
            for source in report.API_SOURCES:
                cpu_before = server.cpu_seconds()
                m = self.run(source, ["api", source, "--base-url", server.base_url(source)])
                cpu_after = server.cpu_seconds()
                m.detail["server_cpu_seconds"] = (
                    None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
                )
        if server.peak_rss_mb is not None:
            click.echo(f"  vendor API server peak RSS {server.peak_rss_mb:,.0f} MB (not an ingestion step)")

    def quality(self, entities: tuple[str, ...] = ()) -> None:
        """Validate every suite (or those of `entities`) at this preset, each in its own
        process, in one fully built warehouse (built once per company: all sources loaded,
        then dbt)."""
        from sample_company.generate import read_manifest

        as_of = f"--as-of={read_manifest(self.root / 'sources')['as_of']}"
        build_dir = self.root / "runs" / "build"
        built = build_dir / "built.json"
        company = json.loads((self.root / COMPANY_MARKER).read_text())
        if not built.exists() or json.loads(built.read_text()) != company:
            click.echo(f"» starting the vendor APIs to build the warehouse (load average {_load()})")
            with VendorApiProcess(self.root / "sources", warm=True) as server:
                urls = [f"--base-url={s}={server.base_url(s)}" for s in report.API_SOURCES]
                m = self.run("build", ["build", *urls, as_of])
            if m.error:
                raise click.ClickException("building the warehouse for the quality benchmark failed")
            built.write_text(json.dumps(company) + "\n")
        else:
            click.echo(f"» build: reusing the warehouse in {build_dir} (delete it to rebuild)")
        env = self.env(build_dir)
        for entity in entities or SUITES:
            self._measure(
                f"validate {entity}", ["validate", entity, as_of], env, self.root / "runs" / f"validate_{entity}.json"
            )

    def daily(self) -> dict:
        """A full run, then the next day's run on the same warehouse, and a full run at `tiny`:
        what a day costs against the history, and the fixed cost of a run."""
        from benchmarks.daily import DailyBench, render

        bench = DailyBench(self.root, self.root / "runs" / "daily", log=click.echo)
        bench.fresh()
        runs = {"full": bench.spine("full", "run", "--preset", self.preset, "--seed", str(self.seed))}
        if not runs["full"].error:
            bench.spine("add a day", "add-day", "--fraction", "0.01")
            runs["daily"] = bench.spine("daily", "run", "--preset", self.preset, "--seed", str(self.seed))
        if self.preset != "tiny":  # the fixed cost: a full run of the smallest company
            tiny = Bench(self.root.parent, "tiny", self.seed)
            if tiny.company() is None and tiny.generate().error:
                raise click.ClickException("generating the tiny company failed")
            fixed = DailyBench(tiny.root, tiny.root / "runs" / "daily", log=click.echo)
            fixed.fresh()
            runs["tiny full"] = fixed.spine("tiny full", "run", "--preset", "tiny", "--seed", str(self.seed))
        figures = {name: r.as_dict() for name, r in runs.items()}
        if "daily" in runs and not runs["daily"].error:
            full, day = runs["full"], runs["daily"]
            figures["ratios"] = {
                "daily / full": day.seconds / full.seconds,
                "daily dbt / full dbt": day.phases.get("dbt", {}).get("seconds", 0)
                / max(full.phases.get("dbt", {}).get("seconds", 0), 1e-9),
            }
        (self.root / "daily.json").write_text(json.dumps(figures, indent=2) + "\n")
        click.echo(f"\nEnd to end at preset {self.preset!r} (load average {_load()}):")
        click.echo(render(runs))
        for name, ratio in figures.get("ratios", {}).items():
            click.echo(f"{name}: {ratio:.3f}")
        click.echo(f"Written to {self.root / 'daily.json'}")
        return figures

    def targets(self) -> dict:
        """A full run of this preset's company on each warehouse target, side by side: the
        embedded DuckDB file and the PostgreSQL database at SPINE_BENCH_POSTGRES_URL (default: a
        database of the benchmark's own on the local server, dropped and made again)."""
        from benchmarks.daily import DailyBench, render

        url = os.environ.get(
            "SPINE_BENCH_POSTGRES_URL", f"postgresql://postgres@127.0.0.1:5432/spine_bench_{self.preset}"
        )
        targets = {
            "duckdb": Warehouse("duckdb", self.root / "runs" / "targets" / "duckdb", ""),
            "postgres": Warehouse("postgres", Path(), url),
        }
        runs = {}
        for name, target in targets.items():
            bench = DailyBench(self.root, self.root / "runs" / "targets" / name, log=click.echo, target=target)
            bench.fresh()
            runs[name] = bench.spine(name, "run", "--preset", self.preset, "--seed", str(self.seed))
        figures = {name: r.as_dict() for name, r in runs.items()}
        if all(not r.error for r in runs.values()):
            figures["ratios"] = {"postgres / duckdb": runs["postgres"].seconds / runs["duckdb"].seconds}
        (self.root / "targets.json").write_text(json.dumps(figures, indent=2) + "\n")
        click.echo(f"\nEnd to end at preset {self.preset!r} on each warehouse target (load average {_load()}):")
        click.echo(render(runs))
        for name, ratio in figures.get("ratios", {}).items():
            click.echo(f"{name}: {ratio:.2f}")
        click.echo(f"Written to {self.root / 'targets.json'}")
        return figures


@click.command()
@click.option(
    "--preset",
    type=click.Choice(list(PRESETS)),
    default="large",
    show_default=True,
    help="Size of the sample company; the targets are set for `large`.",
)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option(
    "--only",
    "groups",
    type=click.Choice(GROUPS),
    multiple=True,
    help="Measure only these (repeatable). Default: all but targets; generate only when the company is missing.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=PROJECT_ROOT / "data" / "bench",
    show_default="data/bench",
    help="The benchmark's own data folder: company, warehouses and results per preset.",
)
@click.option(
    "--suite",
    "suites",
    type=click.Choice(list(SUITES)),
    multiple=True,
    help="Validate only these entities' suites in the quality group (repeatable). Default: every suite.",
)
@click.option("--regenerate", is_flag=True, help="Generate (and measure) the company even if it exists.")
@click.option(
    "--memory-cap-mb",
    type=float,
    default=8192,
    show_default=True,
    help="Stop a step whose RSS passes this (0: never), so a runaway step fails alone instead of "
    "exhausting a shared machine's memory.",
)
def main(
    preset: str,
    seed: int,
    groups: tuple[str, ...],
    data_dir: Path,
    suites: tuple[str, ...],
    regenerate: bool,
    memory_cap_mb: float,
) -> None:
    """Measure generation, ingestion and validation: speed and peak memory against the targets."""
    asked = groups  # `--only generate` measures generation even when the company exists
    groups = groups or DEFAULT_GROUPS
    bench = Bench(data_dir.resolve(), preset, seed, memory_cap_mb or None)
    machine = report.machine()
    click.echo(f"Benchmarks at preset {preset!r} (seed {seed}) in {bench.root}")
    click.echo(
        f"Machine: {machine['cores']} cores, {machine['cpu']}, {machine['memory_mb']:,} MB; load average {_load()}"
    )
    try:
        manifest = None if regenerate or "generate" in asked else bench.company()
        if manifest:
            click.echo(
                f"» generate: reusing the {preset!r} company generated as of {manifest['as_of']} "
                "(--regenerate to measure generation)"
            )
        elif bench.generate().error:
            raise click.ClickException("generating the company failed; nothing to measure")
        if "usage" in groups:
            bench.usage()
        if "api" in groups:
            bench.api()
        if "quality" in groups:
            bench.quality(suites)
        if "daily" in groups:
            bench.daily()
        if "targets" in groups:
            bench.targets()
    finally:
        every = dict(bench.results)
        if total := report.api_total(every):
            every["api"] = total
        if total := report.quality_total(every):
            every["validate (all)"] = total
        if every:
            path = bench.root / "results.json"
            report.save(path, preset, seed, every)
            click.echo("")
            click.echo(f"Results at preset {preset!r} (load average {_load()}; figures vary with machine load):")
            click.echo(report.render(every))
            click.echo(f"\nWritten to {path}")
    if failed := [name for name, m in bench.results.items() if m.error]:
        raise click.ClickException(f"steps that did not finish: {', '.join(failed)}")
