"""The shape of the code base: layers that only import downwards, no cycle, no module that
writes the environment, nothing run at import, one file name per module, one model per yml."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
# Bottom to top: a package may import itself and the packages of lower layers only.
LAYERS = [
    {"data_spine"},
    {"sample_company", "connectors", "expectations"},
    {"quality"},
    {"privacy"},
    {"reporting"},
    {"orchestration"},
    {"command_line", "benchmarks"},
]
LAYER = {package: i for i, packages in enumerate(LAYERS) for package in packages}
# The local vendor stand-ins are named for the connector whose API they mirror.
MIRRORED = {"stripe.py", "hubspot.py", "zendesk.py"}


def modules() -> dict[str, Path]:
    found = {}
    for package in LAYER:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports_of(path: Path) -> set[str]:
    """Every project module a file imports, at its top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.split(".")[0] in LAYER}


def test_packages_import_only_downwards():
    upward = []
    for module, path in modules().items():
        here = module.split(".")[0]
        for name in imports_of(path):
            there = name.split(".")[0]
            if there != here and LAYER[there] >= LAYER[here]:
                upward.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not upward, "\n".join(upward)


def test_no_import_cycle_between_modules():
    known = modules()
    graph = defaultdict(set)
    for module, path in known.items():
        for name in imports_of(path):
            # `from package import name` names a module or an attribute: keep what is a module.
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module and not module.startswith(name + "."):
                graph[module].add(name)
    cycles, state = [], {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(trail[trail.index(nxt) :] + [nxt]) if nxt in trail else nxt)
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for module in sorted(known):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)


def test_no_module_writes_the_environment():
    writes = []
    for path in modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            target = None
            if isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete)):
                targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
                target = next(
                    (t for t in targets if isinstance(t, ast.Subscript) and ast.unparse(t.value) == "os.environ"), None
                )
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                called = ast.unparse(node.func)
                if called in {"os.putenv", "os.unsetenv"} or (
                    called.startswith("os.environ.")
                    and node.func.attr in {"update", "setdefault", "pop", "popitem", "clear"}
                ):
                    target = node
            if target is not None:
                writes.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node).splitlines()[0]}")
    assert not writes, "\n".join(writes)


def _processes_started_by(code: str) -> list[str]:
    """The commands a fresh interpreter starts while running `code` (an audit hook sees every
    process it starts, however it is started)."""
    probe = (
        "import sys\n"
        "started = []\n"
        "sys.addaudithook(lambda event, args: started.append(repr(args[1])) if event == 'subprocess.Popen' else "
        "started.append(event) if event in ('os.system', 'os.posix_spawn', 'os.exec', 'os.fork', 'os.spawn') "
        "else None)\n"
        f"{code}\n"
        "print(repr(started))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return ast.literal_eval(done.stdout.strip().splitlines()[-1])


def test_loading_the_definitions_starts_no_subprocess(dbt_manifest):
    # Importing Dagster itself asks `file` about the interpreter (croniter, through
    # `platform.architecture()`); loading our definitions must start nothing more: no dbt parse.
    # One interpreter: the libraries first, then what loading the definitions adds to them.
    started = _processes_started_by(
        "import dagster, dagster_dbt, dagster_dlt, dlt, duckdb\n"
        "started.append('--- the libraries are loaded ---')\n"
        "import orchestration.definitions as d; assert len(d.defs.resolve_asset_graph().get_all_asset_keys()) > 50"
    )
    ours = started[started.index("--- the libraries are loaded ---") + 1 :]
    assert ours == [], ours


def test_no_two_modules_share_a_file_name():
    seen = defaultdict(list)
    for path in [*modules().values(), *(ROOT / "tests").rglob("*.py")]:
        if path.name not in {"__init__.py", "__main__.py"}:
            seen[path.name].append(str(path.relative_to(ROOT)))
    shared = {name: paths for name, paths in seen.items() if len(paths) > 1}
    for name in MIRRORED:
        paths = shared.get(name, [])
        if sorted(p.split("/")[0] for p in paths) == ["connectors", "sample_company"]:
            shared.pop(name)
    assert not shared, shared


def test_every_model_has_a_yml_of_its_own_beside_it():
    models_dir = ROOT / "dbt_project" / "models"
    crowded, missing = [], []
    for yml in sorted(models_dir.rglob("*.yml")):
        names = [m["name"] for m in (yaml.safe_load(yml.read_text()) or {}).get("models", [])]
        if len(names) > 1:
            crowded.append(f"{yml.relative_to(models_dir)}: {', '.join(names)}")
        if names and names != [yml.stem]:
            crowded.append(f"{yml.relative_to(models_dir)} describes {names}, not {yml.stem}")
    for sql in sorted(models_dir.rglob("*.sql")):
        if not sql.with_suffix(".yml").exists():
            missing.append(str(sql.relative_to(models_dir)))
    assert not crowded, crowded
    assert not missing, f"models without a yml beside them: {missing}"
