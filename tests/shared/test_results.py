"""Run records, reported tables, the check statuses and the consistency checks."""

import json

import pytest
import yaml

from shared.errors import MalformedError
from shared.results import check as chk
from shared.results.__main__ import main as results_main
from shared.results.records import make_record, read_record, write_record
from shared.results.reported_tables import load_table, load_tables

TABLE = {
    "schema_version": 1,
    "paper": "dsp",
    "title": "t",
    "sources": {"s": "a source"},
    "rows": [
        {
            "key": "r1",
            "source": "s",
            "dataset": "cifar10",
            "model": "resnet20",
            "statistic": "median of 5 runs",
            "variant": {"groups": 4},
            "convention": "dsp-prunable",
            "metrics": {"top1": 92.0, "flops_reduction_pct": 60.0},
        },
        {
            "key": "r2",
            "source": "s",
            "dataset": "cifar10",
            "model": "resnet20",
            "statistic": "single run",
            "convention": None,
            "metrics": {"top1": None},
            "unavailable": {"top1": "not given"},
        },
    ],
    "checks": [
        {"name": "ok", "kind": "reduction", "reported": 50.0, "kept": 5, "total": 10},
        {"name": "known bad", "kind": "speedup", "reported": 3.0, "reduction_pct": 50.0, "expect": "inconsistent"},
        {
            "name": "count",
            "kind": "count",
            "reported": 272474,
            "value": {"arch": "cifar-resnet20-B", "convention": "conv-fc", "quantity": "params"},
        },
        {
            "name": "row ref",
            "kind": "difference",
            "reported": 32.0,
            "a": {"row": "r1", "metric": "top1"},
            "b": {"row": "r1", "metric": "flops_reduction_pct"},
        },
    ],
}


def rec(row="r1", kind="reproduction", n=10000, **metrics):
    return make_record(
        "dsp",
        row,
        kind,
        metrics=metrics,
        data={"name": "cifar10", "split": "test", "n": n},
        variant={"groups": 4},
        convention="dsp-prunable",
        seed=0,
    )


def test_record_roundtrip_and_no_overwrite(tmp_path):
    r = rec(top1=91.9)
    path = write_record(r, tmp_path)
    assert read_record(path) == r
    assert r["code"]["package"] and r["env"]["python"]
    with pytest.raises(FileExistsError):
        write_record(r, tmp_path)


@pytest.mark.parametrize(
    "mutate,field",
    [
        (lambda r: r.pop("metrics"), "metrics"),
        (lambda r: r["metrics"].update(top1="high"), "metrics.top1"),
        (lambda r: r.update(kind="final"), "kind"),
        (lambda r: r.update(convention="flops?"), "convention"),
        (lambda r: r.update(schema_version=99), "schema_version"),
        (lambda r: r["data"].pop("name"), "data.name"),
    ],
)
def test_malformed_record_names_file_and_field(tmp_path, mutate, field):
    r = rec(top1=91.0)
    mutate(r)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(r))
    with pytest.raises(MalformedError, match=rf"bad.json: field '{field}'"):
        read_record(path)


def test_malformed_table_names_file_and_field(tmp_path):
    bad = json.loads(json.dumps(TABLE))
    bad["rows"][0]["source"] = "nowhere"
    path = tmp_path / "dsp.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(MalformedError, match=r"dsp.yaml: field 'rows\[r1\].source'"):
        load_table(path)
    bad["rows"][0]["source"] = "s"
    bad["rows"][1]["unavailable"] = {}
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(MalformedError, match=r"rows\[r2\].metrics.top1.*reason"):
        load_table(path)


def _status(records, metric="top1", row="r1"):
    comps, _ = chk.compare({"dsp": TABLE}, [("x", r) for r in records])
    return [c for c in comps if c.row == row and c.metric == metric]


def test_statuses():
    assert _status([])[0].status == "not run"
    c = _status([rec(top1=92.2)])[0]
    assert c.status == "match" and c.delta == pytest.approx(0.2) and c.tol == 0.3
    # n=10000 at 92%: SE = 0.271 points; band = 0.3 + 2*0.271 + 0.5 = 1.343
    assert _status([rec(top1=93.2)])[0].status == "within noise"
    assert _status([rec(top1=93.4)])[0].status == "mismatch"
    # a smaller test set widens the noise band
    assert _status([rec(top1=93.4, n=932)])[0].status == "within noise"
    # median over seeds (the row says "median of 5 runs")
    c = _status([rec(top1=v) for v in (90.0, 92.1, 92.0, 99.0, 91.9)])[0]
    assert c.ours == 92.0 and c.status == "match" and len(c.values) == 5
    # reductions: 0.01 to match, 1 point of noise
    assert _status([rec(flops_reduction_pct=60.004)], "flops_reduction_pct")[0].status == "match"
    assert _status([rec(flops_reduction_pct=60.8)], "flops_reduction_pct")[0].status == "within noise"
    assert _status([rec(flops_reduction_pct=58.0)], "flops_reduction_pct")[0].status == "mismatch"


def test_smoke_and_other_variants_are_not_compared():
    assert _status([rec(kind="smoke", top1=10.0)])[0].status == "not run"
    r = rec(top1=10.0)
    r["variant"]["groups"] = 2
    c = _status([r])[0]
    assert c.status == "not run" and "variant groups=2" in c.note


def test_released_and_reproduction_are_separate_lines():
    comps = _status([rec(top1=92.0), rec(kind="released-model", top1=92.1)])
    assert {c.kind for c in comps} == {"reproduction", "released-model"}


def test_consistency_checks_hand_values():
    res = {r.name: r for r in chk.run_checks("dsp", TABLE)}
    assert res["ok"].consistent and res["ok"].recomputed == 50.0 and not res["ok"].failed
    assert res["known bad"].recomputed == pytest.approx(2.0) and not res["known bad"].consistent
    assert res["known bad"].status == "inconsistent (known)" and not res["known bad"].failed
    assert res["count"].consistent
    assert res["row ref"].recomputed == 32.0 and res["row ref"].consistent


def test_packaged_tables_are_valid_and_as_expected():
    tables = load_tables()
    assert {"dsp", "ista"} <= set(tables)
    for paper, table in tables.items():
        results = chk.run_checks(paper, table)
        assert results, f"{paper} has no consistency checks"
        assert not [r.name for r in results if r.failed]


def test_cli_exit_codes(tmp_path, capsys):
    tdir = tmp_path / "tables"
    tdir.mkdir()
    (tdir / "dsp.yaml").write_text(yaml.safe_dump(TABLE))
    rdir = tmp_path / "recs"
    write_record(rec(top1=92.1), rdir)
    args = ["--tables", str(tdir), "--no-default-records", "--records", str(rdir)]
    assert results_main(["check", *args]) == 0
    out = capsys.readouterr().out
    assert "match" in out and "inconsistent (known)" in out
    write_record(rec(top1=80.0), rdir)  # median becomes 86.05: mismatch
    assert results_main(["check", *args]) == 1
    (rdir / "dsp" / "broken.json").write_text("{")
    assert results_main(["check", *args]) == 2
    assert "broken.json: not a readable JSON run record" in capsys.readouterr().err


def test_tables_writes_markdown_and_plot(tmp_path):
    tdir = tmp_path / "tables"
    tdir.mkdir()
    (tdir / "dsp.yaml").write_text(yaml.safe_dump(TABLE))
    rdir = tmp_path / "recs"
    write_record(rec(top1=92.1, flops_reduction_pct=60.5), rdir)
    write_record(rec(kind="smoke", top1=50.0), rdir)
    out = tmp_path / "out"
    assert (
        results_main(
            ["tables", "--tables", str(tdir), "--no-default-records", "--records", str(rdir), "--out", str(out)]
        )
        == 0
    )
    md = (out / "TABLES.md").read_text()
    assert "| r1 | s | top1 | - | 92.00 | 92.10 (1) | reproduction | 0.10 | match |" in md
    assert "Smoke runs (1" in md
    assert (out / "plots" / "dsp.png").stat().st_size > 1000
