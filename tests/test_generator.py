"""The sample company is deterministic and its manifest tells the truth about its files."""

from __future__ import annotations

import gzip
import hashlib
from datetime import date
from pathlib import Path

import pytest

from sample_company.generate import generate

AS_OF = date(2026, 11, 21)


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _quiet(*_args) -> None:
    pass


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[Path, Path, Path]:
    base = tmp_path_factory.mktemp("gen")
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        generate(base / name / "sources", base / name / "landing", preset="tiny", seed=seed, as_of=AS_OF, log=_quiet)
    return base / "a", base / "b", base / "c"


def test_same_seed_gives_byte_identical_output(two_runs):
    a, b, _ = two_runs
    digest_a = _digest(a)
    assert len(digest_a) > 10
    assert digest_a == _digest(b)


def test_other_seed_gives_other_company(two_runs):
    a, _, c = two_runs
    assert _digest(a) != _digest(c)


def test_manifest_counts_match_files(two_runs):
    import json

    a, _, _ = two_runs
    manifest = json.loads((a / "sources" / "manifest.json").read_text())
    for system in ("stripe", "hubspot", "zendesk"):
        for obj, expected in manifest["counts"][system].items():
            lines = (a / "sources" / system / f"{obj}.jsonl").read_text().splitlines()
            assert len(lines) == expected, f"{system}.{obj}"
    files = sorted((a / "landing").glob("*.jsonl.gz"))
    assert len(files) == manifest["counts"]["usage"]["files"]
    events = sum(len(gzip.decompress(f.read_bytes()).splitlines()) for f in files)
    assert events == manifest["counts"]["usage"]["events"] == 5_000


def test_sources_agree_with_each_other(two_runs):
    """Every billing customer and support organization points at a CRM company."""
    import json

    a, _, _ = two_runs
    read = lambda system, obj: [json.loads(l) for l in (a / "sources" / system / f"{obj}.jsonl").read_text().splitlines()]
    crm_ids = {c["id"] for c in read("hubspot", "companies")}
    assert {c["metadata"]["hubspot_company_id"] for c in read("stripe", "customers")} <= crm_ids
    assert {o["external_id"] for o in read("zendesk", "organizations")} <= crm_ids
    customers = {c["id"] for c in read("stripe", "customers")}
    assert {s["customer"] for s in read("stripe", "subscriptions")} <= customers
    assert {i["customer"] for i in read("stripe", "invoices")} <= customers


def test_unknown_preset_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown scale preset 'huge'"):
        generate(tmp_path / "s", tmp_path / "l", preset="huge", log=_quiet)
