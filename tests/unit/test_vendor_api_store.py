"""The local vendor APIs read their records back from the generated files: a page is the
records' lines, whatever order a listing asks for them in, and a file replaced on disk is
served in its new version."""

from __future__ import annotations

import os

import orjson
import pytest

from sample_company.vendor_api import stripe
from sample_company.vendor_api.store import RecordStore, Table

pytestmark = pytest.mark.unit


def _write(path, lines: list[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(lines))


def test_a_page_is_its_records_lines_in_the_order_asked(tmp_path):
    records = [{"id": f"cus_{i}", "object": "customer", "created": 1_700_000_000 + i} for i in range(50)]
    lines = []
    for i, r in enumerate(records):
        lines.append(orjson.dumps(r) + (b"  \n" if i % 7 == 0 else b"\n"))
        if i % 10 == 0:
            lines.append(b"\n")  # blank lines are not records
    _write(tmp_path / "stripe" / "customers.jsonl", lines)
    store = RecordStore(tmp_path)
    table = stripe.table(store, "customers")

    assert len(table) == 50
    for positions in ([0, 1, 2, 3], [49, 30, 7, 8], [5, 45], [12]):
        assert [orjson.loads(raw) for raw in table.raws(positions)] == [records[p] for p in positions]
    assert orjson.loads(orjson.dumps(table.fragment([3, 2]))) == [records[3], records[2]]

    status, body = stripe.handle(store, "/v1/customers", {"limit": "3", "starting_after": "cus_40"})
    assert status == 200 and [r["id"] for r in orjson.loads(orjson.dumps(body))["data"]] == [
        "cus_39",
        "cus_38",
        "cus_37",
    ]


def test_a_file_replaced_on_disk_is_served_in_its_new_version(tmp_path):
    path = tmp_path / "stripe" / "customers.jsonl"
    _write(path, [orjson.dumps({"id": "cus_old", "object": "customer", "created": 1}) + b"\n"])
    store = RecordStore(tmp_path)
    old = stripe.table(store, "customers")

    replacement = path.with_suffix(".tmp")
    _write(
        replacement, [orjson.dumps({"id": f"cus_new{i}", "object": "customer", "created": i}) + b"\n" for i in (1, 2)]
    )
    os.replace(replacement, path)

    status, body = stripe.handle(store, "/v1/customers", {"limit": "10"})
    assert [r["id"] for r in orjson.loads(orjson.dumps(body))["data"]] == ["cus_new2", "cus_new1"]
    # A request that began on the old version still reads the old file's lines.
    assert orjson.loads(old.raw(0))["id"] == "cus_old"


def test_an_index_is_kept_beside_its_file_and_used_until_the_file_changes(tmp_path, monkeypatch):
    path = tmp_path / "stripe" / "customers.jsonl"
    _write(path, [orjson.dumps({"id": f"cus_{i}", "object": "customer", "created": i}) + b"\n" for i in range(5)])
    first = stripe.table(RecordStore(tmp_path), "customers")
    assert (tmp_path / "stripe" / ".index" / "customers.jsonl.pickle").is_file()

    # A second server on the unchanged file reads the kept index, not the records.
    with monkeypatch.context() as m:
        m.setattr(Table, "_index", lambda *_: pytest.fail("the file was read again"))
        again = stripe.table(RecordStore(tmp_path), "customers")
    assert again.columns == first.columns and list(again.offsets) == list(first.offsets)

    with path.open("ab") as f:
        f.write(orjson.dumps({"id": "cus_new", "object": "customer", "created": 9}) + b"\n")
    changed = stripe.table(RecordStore(tmp_path), "customers")
    assert len(changed) == 6 and changed.columns["id"][-1] == "cus_new"
