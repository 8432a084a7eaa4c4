"""What each role may read of the served data: privacy/access_policy.yml (see its comments for
the rules), checked against the classification every served column declares in its dbt column
meta (dbt_project/models/marts/<dataset>.yml).

Levels and kinds are the classification vocabulary of dbt_project.yml, read as the rest of the
project reads it (`connectors.contract`). Loading the policy checks it whole against the
declared columns and resolves, for every role, every dataset and column, the mode that applies
and the rule that decided it, so a mistake in the file (an unknown dataset, column, group, mode
or key) is reported when it is read, with its place in the file, and never shows up as a column
quietly granted.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from connectors.contract import Classification, vocabulary
from data_spine.settings import PROJECT_ROOT

POLICY_FILE = Path(__file__).resolve().with_name("access_policy.yml")
MARTS_DIR = PROJECT_ROOT / "dbt_project" / "models" / "marts"

COLUMN_MODES = ("read", "masked", "pseudonymous", "hidden")
DATASET_ACCESS = ("read", "aggregate_only")
TRUNCATIONS = ("day", "week", "month", "quarter", "year")
ALL_DATASETS = "*"

# Role names become schema and file names.
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_TEXT_TYPES = ("varchar", "text", "string", "char")


class AccessPolicyError(ValueError):
    """The access policy is not valid against the declared columns."""


class UnknownRole(AccessPolicyError):
    pass


class ClassificationError(ValueError):
    """A served column declares no classification (or one the policy cannot read)."""


def shown_path(path: Path) -> str:
    """A path as messages show it: relative to the project when inside it."""
    return str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else str(path)


@dataclass(frozen=True)
class Column:
    """A served column as its dbt yml declares it."""

    name: str
    classification: str | None
    personal_data: str | None = None
    identifies: str | None = None
    data_type: str | None = None

    @property
    def is_text(self) -> bool:
        return self.data_type is None or self.data_type.lower().startswith(_TEXT_TYPES)


def declared_columns(marts_dir: Path = MARTS_DIR) -> dict[str, dict[str, Column]]:
    """Dataset -> column -> its declaration, from the marts' ymls (a served table has its mart's
    columns). A column without a classification is returned with none (`require_classified`
    refuses it where it is served); a value outside the known levels or kinds is refused here."""
    catalog: dict[str, dict[str, Column]] = {}
    errors = []
    for yml in sorted(marts_dir.glob("*.yml")):
        for model in (yaml.safe_load(yml.read_text()) or {}).get("models") or []:
            columns = {}
            for spec in model.get("columns") or []:
                # dbt reads column meta at the column and under its config; the config wins.
                meta = {**(spec.get("meta") or {}), **((spec.get("config") or {}).get("meta") or {})}
                declared = Classification.of(meta)
                # Unclassified is refused where served (require_classified), anything else here.
                for problem in declared.problems():
                    if declared.level is not None or problem != "no classification":
                        errors.append(f"{shown_path(yml)}: {spec['name']}: {problem}")
                columns[spec["name"]] = Column(
                    spec["name"], declared.level, declared.personal_data, declared.identifies, spec.get("data_type")
                )
            catalog[model["name"]] = columns
    if errors:
        raise ClassificationError("column meta the access policy cannot read:\n  " + "\n  ".join(errors))
    return catalog


def require_classified(catalog: Mapping[str, Mapping[str, Column]], served: Mapping[str, Iterable[str]]) -> None:
    """Refuse a served column that is not declared with a classification: what it holds is
    unknown, so no rule can decide who reads it."""
    missing = []
    for dataset, columns in served.items():
        declared = catalog.get(dataset, {})
        for name in columns:
            column = declared.get(name)
            if column is None:
                missing.append(f"serving.{dataset}.{name} (not in dbt_project/models/marts/{dataset}.yml)")
            elif column.classification is None:
                missing.append(f"serving.{dataset}.{name} (no meta classification in its yml)")
    if missing:
        raise ClassificationError(
            "served columns without a classification; role access is not published until each declares "
            "meta {classification: public|internal|confidential|restricted} (and personal_data when "
            "personal):\n  " + "\n  ".join(missing)
        )


@dataclass(frozen=True)
class Rules:
    """Modes by classification level, by personal-data kind and by column (or group) name."""

    classification: Mapping[str, str] = field(default_factory=dict)
    personal_data: Mapping[str, str] = field(default_factory=dict)
    columns: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Dimension:
    column: str
    name: str
    by: str | None = None


@dataclass(frozen=True)
class Aggregate:
    dataset: str
    dimensions: tuple[Dimension, ...]
    measures: Mapping[str, str]


@dataclass(frozen=True)
class ColumnGrant:
    column: Column
    mode: str
    rule: str  # the place in the policy that decided, or why nothing granted it


@dataclass(frozen=True)
class Grant:
    """How a role reads one dataset: its access and every declared column's mode."""

    role: str
    dataset: str
    access: str  # read | aggregate_only
    columns: Mapping[str, ColumnGrant]
    rule: str
    aggregate: Aggregate | None = None

    def readable(self, served: Iterable[str] | None = None) -> list[ColumnGrant]:
        """The row-level columns the role gets (all but hidden), in the dataset's order."""
        keep = set(served) if served is not None else None
        return [g for name, g in self.columns.items() if g.mode != "hidden" and (keep is None or name in keep)]

    def dimensions(self) -> list[tuple[Dimension, ColumnGrant]]:
        """The aggregate's dimensions the role gets, each with its column's mode."""
        assert self.aggregate is not None
        pairs = [(d, self.columns[d.column]) for d in self.aggregate.dimensions]
        return [(d, g) for d, g in pairs if g.mode != "hidden"]

    def output_columns(self) -> list[str]:
        if self.access == "aggregate_only":
            return [d.name for d, _ in self.dimensions()] + list(self.aggregate.measures)
        return [g.column.name for g in self.readable()]


@dataclass(frozen=True)
class Role:
    name: str
    description: str
    grants: Mapping[str, Grant]  # the datasets it reads; any other is denied


@dataclass(frozen=True)
class AccessPolicy:
    path: Path
    sha256: str
    roles: Mapping[str, Role]
    groups: Mapping[str, tuple[str, ...]]
    aggregates: Mapping[str, Aggregate]
    catalog: Mapping[str, Mapping[str, Column]]

    def role(self, name: str) -> Role:
        try:
            return self.roles[name]
        except KeyError:
            raise UnknownRole(
                f"unknown role {name!r}: the roles of {shown_path(self.path)} are {', '.join(self.roles)}"
            ) from None

    def denial(self, role: str, dataset: str) -> str:
        """Why a role does not read a dataset at all."""
        return f"roles.{role}.datasets does not list {dataset}"


def load_policy(path: Path = POLICY_FILE, catalog: Mapping[str, Mapping[str, Column]] | None = None) -> AccessPolicy:
    """Read and check the policy against the declared columns (the marts' ymls unless given)."""
    text = path.read_text()
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise AccessPolicyError(f"{shown_path(path)} is not valid YAML: {e}") from None
    catalog = declared_columns() if catalog is None else catalog
    return _Checker(path, raw, catalog).policy(hashlib.sha256(text.encode()).hexdigest())


class _Checker:
    """Reads the policy, noting every mistake with its place in the file, then raises them all."""

    def __init__(self, path: Path, raw: Any, catalog: Mapping[str, Mapping[str, Column]]):
        self.path, self.raw, self.catalog = path, raw, catalog
        self.errors: list[str] = []
        words = vocabulary()
        self.levels, self.kinds = tuple(words["classes"]), tuple(words["personal_data"])

    def fail(self, where: str, message: str) -> None:
        self.errors.append(f"{where}: {message}")

    def mapping(self, value: Any, where: str, keys: Iterable[str] | None = None) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(where, f"expected a mapping, got {value!r}")
            return {}
        if keys is not None:
            for key in value:
                if key not in keys:
                    self.fail(where, f"unknown key {key!r} (expected one of {', '.join(keys)})")
        return value

    def policy(self, sha256: str) -> AccessPolicy:
        raw = self.mapping(self.raw, "the policy", ("groups", "aggregates", "roles"))
        self.groups = self.read_groups(self.mapping(raw.get("groups"), "groups"))
        self.aggregates = self.read_aggregates(self.mapping(raw.get("aggregates"), "aggregates"))
        roles = {}
        raw_roles = self.mapping(raw.get("roles"), "roles")
        if not raw_roles:
            self.fail("roles", "no role is declared")
        for name, spec in raw_roles.items():
            if not isinstance(name, str) or not _NAME.match(name):
                self.fail(f"roles.{name}", "a role name is lower-case letters, digits and _, starting with a letter")
                continue
            roles[name] = self.read_role(name, spec)
        if self.errors:
            errors = "\n  ".join(dict.fromkeys(self.errors))
            raise AccessPolicyError(f"{shown_path(self.path)} is not a valid access policy:\n  {errors}")
        return AccessPolicy(self.path, sha256, roles, self.groups, self.aggregates, self.catalog)

    def known_column(self, name: str, dataset: str | None = None) -> bool:
        """`column` or `dataset.column`, in `dataset` when given, else in any dataset."""
        if "." in name:
            ds, _, column = name.partition(".")
            return (dataset is None or ds == dataset) and column in self.catalog.get(ds, {})
        datasets = [dataset] if dataset else list(self.catalog)
        return any(name in self.catalog.get(ds, {}) for ds in datasets)

    def read_groups(self, raw: dict) -> dict[str, tuple[str, ...]]:
        groups = {}
        every_column = {c for columns in self.catalog.values() for c in columns}
        for name, members in raw.items():
            where = f"groups.{name}"
            if name in every_column:
                self.fail(where, "a group may not be named like a column")
            if not isinstance(members, list) or not all(isinstance(m, str) for m in members) or not members:
                self.fail(where, "expected a list of column names")
                continue
            for member in members:
                if not self.known_column(member):
                    self.fail(where, f"no served dataset has a column {member!r}")
            groups[name] = tuple(members)
        return groups

    def read_aggregates(self, raw: dict) -> dict[str, Aggregate]:
        aggregates = {}
        for dataset, spec in raw.items():
            where = f"aggregates.{dataset}"
            if dataset not in self.catalog:
                self.fail(where, f"unknown dataset {dataset!r}")
                continue
            spec = self.mapping(spec, where, ("dimensions", "measures"))
            columns = self.catalog[dataset]
            dimensions = []
            for i, item in enumerate(spec.get("dimensions") or []):
                at = f"{where}.dimensions[{i}]"
                if isinstance(item, str):
                    item = {"column": item}
                item = self.mapping(item, at, ("column", "by", "as"))
                column, by = item.get("column"), item.get("by")
                if column not in columns:
                    self.fail(at, f"{dataset} has no column {column!r}")
                    continue
                if columns[column].personal_data:
                    kind = columns[column].personal_data
                    self.fail(at, f"{dataset}.{column} holds personal data ({kind}): it cannot be a dimension")
                if by is not None and by not in TRUNCATIONS:
                    self.fail(at, f"by {by!r} is not one of {', '.join(TRUNCATIONS)}")
                dimensions.append(Dimension(column, item.get("as") or column, by))
            measures = self.mapping(spec.get("measures"), f"{where}.measures")
            if not measures:
                self.fail(where, "an aggregate needs measures")
            for name, sql in measures.items():
                if not isinstance(sql, str) or not sql.strip():
                    self.fail(f"{where}.measures.{name}", "expected a SQL aggregate expression")
            names = [d.name for d in dimensions] + list(measures)
            if len(set(names)) != len(names):
                self.fail(where, "dimension and measure names must differ")
            aggregates[dataset] = Aggregate(dataset, tuple(dimensions), {k: str(v) for k, v in measures.items()})
        return aggregates

    def read_modes(
        self, value: Any, where: str, keys: tuple[str, ...] | None, modes: tuple[str, ...]
    ) -> dict[str, str]:
        """A mapping key -> mode, or one mode for every key (of a closed set of keys)."""
        if isinstance(value, str) and keys is not None:
            value = dict.fromkeys(keys, value)
        value = self.mapping(value, where, keys)
        for key, mode in value.items():
            if mode not in modes:
                self.fail(f"{where}.{key}", f"unknown mode {mode!r} (expected one of {', '.join(modes)})")
        return dict(value)

    def read_rules(self, spec: dict, where: str, dataset: str | None) -> Rules:
        columns = self.read_modes(spec.get("columns"), f"{where}.columns", None, COLUMN_MODES)
        for name in columns:
            if name not in self.groups and not self.known_column(name, dataset):
                scope = f"dataset {dataset}" if dataset else "any served dataset"
                self.fail(f"{where}.columns.{name}", f"neither a group nor a column of {scope}")
        return Rules(
            self.read_modes(spec.get("classification"), f"{where}.classification", self.levels, COLUMN_MODES),
            self.read_modes(spec.get("personal_data"), f"{where}.personal_data", self.kinds, COLUMN_MODES),
            columns,
        )

    def read_role(self, name: str, spec: Any) -> Role:
        where = f"roles.{name}"
        spec = self.mapping(spec, where, ("description", "classification", "personal_data", "columns", "datasets"))
        rules = self.read_rules(spec, where, None)
        entries = self.mapping(spec.get("datasets"), f"{where}.datasets")
        if not entries:
            self.fail(f"{where}.datasets", "the role reads no dataset")
        grants = {}
        for dataset, entry in entries.items():
            at = f"{where}.datasets.{dataset}"
            if dataset != ALL_DATASETS and dataset not in self.catalog:
                self.fail(at, f"unknown dataset {dataset!r} (served: {', '.join(sorted(self.catalog))})")
                continue
            if isinstance(entry, str):
                entry = {"access": entry}
            entry = self.mapping(entry, at, ("access", "classification", "personal_data", "columns"))
            access = entry.get("access")
            if access not in DATASET_ACCESS:
                self.fail(at, f"unknown access {access!r} (expected one of {', '.join(DATASET_ACCESS)})")
                continue
            named = [dataset] if dataset != ALL_DATASETS else [d for d in self.catalog if d not in entries]
            own = self.read_rules(entry, at, dataset if dataset != ALL_DATASETS else None)
            for ds in named:
                grant = self.grant(name, ds, access, at, [(at, own), (where, rules)])
                if grant is not None:
                    grants[ds] = grant
        return Role(name, " ".join(str(spec.get("description") or "").split()), grants)

    def grant(self, role: str, dataset: str, access: str, at: str, layers: list[tuple[str, Rules]]) -> Grant | None:
        aggregate = None
        if access == "aggregate_only":
            aggregate = self.aggregates.get(dataset)
            if aggregate is None:
                self.fail(at, f"aggregate_only, but aggregates.{dataset} declares no aggregate")
                return None
        columns = {}
        for column in self.catalog[dataset].values():
            mode, rule = self.resolve(role, dataset, column, layers)
            if mode == "masked" and not column.is_text:
                self.fail(at, f"{dataset}.{column.name} would be masked; only text is, not {column.data_type}")
            columns[column.name] = ColumnGrant(column, mode, rule)
        grant = Grant(role, dataset, access, columns, f"{at}: {access}", aggregate)
        if access == "read" and not grant.readable():
            self.fail(at, f"grants {dataset} but no column of it")
        return grant

    def resolve(self, role: str, dataset: str, column: Column, layers: list[tuple[str, Rules]]) -> tuple[str, str]:
        for where, rules in layers:
            found = self.by_name(dataset, column.name, rules.columns, f"{where}.columns")
            if found:
                return found
        if column.personal_data:
            for where, rules in layers:
                if column.personal_data in rules.personal_data:
                    mode = rules.personal_data[column.personal_data]
                    return mode, f"{where}.personal_data.{column.personal_data}: {mode}"
            return "hidden", f"roles.{role} grants no personal_data {column.personal_data}"
        if column.classification is None:
            # Refused where served (require_classified); never granted meanwhile.
            return "hidden", "no classification declared"
        for where, rules in layers:
            if column.classification in rules.classification:
                mode = rules.classification[column.classification]
                return mode, f"{where}.classification.{column.classification}: {mode}"
        return "hidden", f"roles.{role} grants no {column.classification} column"

    def by_name(self, dataset: str, column: str, rules: Mapping[str, str], where: str) -> tuple[str, str] | None:
        for name in (f"{dataset}.{column}", column):
            if name in rules:
                return rules[name], f"{where}.{name}: {rules[name]}"
        hits = {
            group: mode
            for group, mode in rules.items()
            if group in self.groups and {f"{dataset}.{column}", column} & set(self.groups[group])
        }
        if len(set(hits.values())) > 1:
            self.fail(where, f"groups {', '.join(hits)} give {dataset}.{column} different modes")
        if hits:
            group, mode = next(iter(hits.items()))
            return mode, f"{where}.{group}: {mode}"
        return None


def describe(policy: AccessPolicy) -> str:
    """What each role reads, as Markdown (privacy/README.md holds this text)."""
    roles = list(policy.roles.values())
    lines = [
        "| dataset | " + " | ".join(r.name for r in roles) + " |",
        "|---|" + "---|" * len(roles),
    ]
    for dataset in sorted(policy.catalog):
        cells = []
        for role in roles:
            grant = role.grants.get(dataset)
            if grant is None:
                cells.append("—")
            elif grant.access == "aggregate_only":
                cells.append("aggregate")
            else:
                cells.append("rows*" if any(g.mode != "read" for g in grant.columns.values()) else "rows")
        lines.append(f"| {dataset} | " + " | ".join(cells) + " |")
    lines += ["", "rows: every row; rows*: every row, some columns masked, pseudonymous or hidden (below)."]
    for role in roles:
        lines += ["", f"**{role.name}**: {role.description}", ""]
        for dataset, grant in sorted(role.grants.items()):
            if grant.access == "aggregate_only":
                dims = ", ".join(d.name + ("" if g.mode == "read" else f" ({g.mode})") for d, g in grant.dimensions())
                lines.append(f"- `{dataset}`: aggregate by {dims or 'nothing'}: {', '.join(grant.aggregate.measures)}")
                continue
            by_mode: dict[str, list[str]] = {}
            for name, g in grant.columns.items():
                by_mode.setdefault(g.mode, []).append(name)
            held = "; ".join(f"{mode}: {', '.join(by_mode[mode])}" for mode in COLUMN_MODES[1:] if mode in by_mode)
            lines.append(f"- `{dataset}`: rows" + (f"; {held}" if held else ", every column as served"))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(describe(load_policy()), end="")
