"""Run records, reported tables, the check statuses and the consistency checks."""

import json
from pathlib import Path

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
    # a smaller test set widens the noise band (the authors' checkpoint on the 932-image subset)
    [c] = _status([rec(kind="released-model", top1=93.4, n=932)])
    assert c.status == "within noise" and c.n_test == 932
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
    assert "| r1 | s | top1 | - | 92.00 | 92.10 (1) | ours: reproduction (full data) | 0.10 | 0.30 |" in md
    assert "### Smoke runs (1;" in md
    assert (out / "plots" / "dsp.png").stat().st_size > 1000


# ----------------------------------------------------------------------------------------------------
# Range checks, duplicate keys, reproductions on subsets
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "metric,value,ok",
    [
        ("top1", 150.0, False),
        ("top1", -1.0, False),
        ("top1", 100.0, True),
        ("flops_reduction_pct", 250.0, False),
        ("flops_reduction_pct", -5.0, True),  # the model grew
        ("sparsity_pct", -5.0, False),
        ("top1_drop", -0.58, True),  # pruned above its baseline, as EKG's poster prints
        ("params", -3, False),
        ("flops_reduction_x", -1.0, False),
        ("group_lasso", -2.0, True),  # no range implied by the name
        ("corr_val_loss", -0.3, True),  # a correlation, not a loss
        ("corr_val_loss", 1.5, False),
    ],
)
def test_record_metric_ranges(tmp_path, metric, value, ok):
    r = rec(top1=91.0)
    r["metrics"][metric] = value
    path = tmp_path / "r.json"
    path.write_text(json.dumps(r))
    if ok:
        assert read_record(path)["metrics"][metric] == value
    else:
        with pytest.raises(MalformedError, match=rf"r.json: field 'metrics.{metric}': {value!r} is outside"):
            read_record(path)


@pytest.mark.parametrize(
    "edit,field",
    [
        (lambda t: t["rows"][0]["metrics"].update(top1=150.0), r"rows\[r1\].metrics.top1"),
        (
            lambda t: t["rows"][0]["metrics"].update(flops_reduction_pct=250.0),
            r"rows\[r1\].metrics.flops_reduction_pct",
        ),
        (lambda t: t["rows"][0].update(tolerance={"top1": -0.1}), r"rows\[r1\].tolerance.top1"),
        (lambda t: t["checks"][0].update(tol=-1), r"checks\[0\].tol"),
    ],
)
def test_reported_table_ranges(tmp_path, edit, field):
    bad = json.loads(json.dumps(TABLE))
    edit(bad)
    path = tmp_path / "dsp.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(MalformedError, match=rf"dsp.yaml: field '{field}'"):
        load_table(path)


def test_duplicate_json_keys_are_rejected(tmp_path):
    text = json.dumps(rec(top1=91.0), indent=1)
    path = tmp_path / "dup.json"
    path.write_text(text.replace('"kind": "reproduction"', '"kind": "smoke", "kind": "reproduction"'))
    with pytest.raises(MalformedError, match=r"dup.json: field 'kind' is given twice"):
        read_record(path)
    nested = text.replace('"top1": 91.0', '"top1": 91.0, "top1": 99.0')
    path.write_text(nested)
    with pytest.raises(MalformedError, match=r"field 'top1' is given twice"):
        read_record(path)


def test_duplicate_yaml_keys_are_rejected(tmp_path):
    text = yaml.safe_dump(TABLE, sort_keys=False).replace("title: t\n", "title: t\ntitle: u\n")
    path = tmp_path / "dsp.yaml"
    path.write_text(text)
    with pytest.raises(MalformedError, match=r"dsp.yaml: not a readable YAML table: .*'title' is given twice"):
        load_table(path)


def test_reproduction_needs_full_data():
    with pytest.raises(MalformedError, match=r"field 'data.n': a 'reproduction' record .*10,000 examples.*got 932"):
        rec(top1=92.0, n=932)
    assert rec(kind="smoke", top1=92.0, n=932)["kind"] == "smoke"
    assert rec(kind="released-model", top1=92.0, n=932)["data"]["n"] == 932
    assert rec(top1=92.0, n=10000)["kind"] == "reproduction"


# ----------------------------------------------------------------------------------------------------
# The command line: records under any folder, per-command help, defaults
# ----------------------------------------------------------------------------------------------------


def _tables_dir(tmp_path):
    tdir = tmp_path / "tables"
    tdir.mkdir(exist_ok=True)
    (tdir / "dsp.yaml").write_text(yaml.safe_dump(TABLE))
    return tdir


def test_records_on_a_mixed_run_folder(tmp_path, capsys):
    run = tmp_path / "runs" / "x"
    write_record(rec(top1=92.1), run / "records")
    write_record(rec(kind="smoke", top1=40.0), run / "deep" / "er")
    (run / "config.json").write_text(json.dumps({"lr": 0.1}))
    (run / "stage.json").write_text("[1, 2]")
    (run / "metrics.jsonl").write_text("{}\n")
    assert results_main(["records", "--no-default-records", "--records", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "2 run record(s); skipped 2 JSON file(s) that are not run records (config.json, stage.json)" in out
    assert out.count("dsp   reproduction") == 1 and out.count("dsp   smoke") == 1
    # a record that lost a field is an error, not skipped
    broken = rec(top1=1.0)
    broken.pop("run_id")
    (run / "broken.json").write_text(json.dumps(broken))
    assert results_main(["records", "--no-default-records", "--records", str(tmp_path / "runs")]) == 2
    assert "broken.json: field 'run_id': missing" in capsys.readouterr().err
    (run / "broken.json").unlink()
    # a file named explicitly must be a record
    assert results_main(["records", "--no-default-records", "--records", str(run / "config.json")]) == 2
    assert "config.json: not a run record" in capsys.readouterr().err


def test_missing_records_folder_is_an_error(tmp_path, capsys):
    tdir = str(_tables_dir(tmp_path))
    for command in ("check", "tables", "records"):
        args = [command, "--tables", tdir, "--no-default-records", "--records", str(tmp_path / "nope")]
        assert results_main(args) == 2
        err = capsys.readouterr().err
        assert f"run records folder {tmp_path / 'nope'} does not exist" in err and err.count("\n") == 1


def test_default_records_come_from_the_repository_not_the_cwd(tmp_path, monkeypatch, capsys):
    from shared.results import __main__ as cli

    assert cli.DEFAULT_RECORDS == Path(__file__).resolve().parents[2] / "results" / "records"
    monkeypatch.chdir(tmp_path)
    fake = tmp_path / "committed"
    write_record(rec(top1=92.0), fake)
    monkeypatch.setattr(cli, "DEFAULT_RECORDS", fake)
    assert results_main(["records", "--tables", str(_tables_dir(tmp_path))]) == 0
    assert "1 run record(s)" in capsys.readouterr().out
    assert results_main(["records", "--no-default-records"]) == 0
    assert "0 run record(s)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "command,words",
    [("check", "--all"), ("tables", "--update-committed"), ("records", "JSON files that are not run records")],
)
def test_each_command_has_its_own_help(command, words, capsys):
    with pytest.raises(SystemExit) as info:
        results_main([command, "--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0 and out.startswith(f"usage: python -m shared.results {command}") and words in out
    others = {"check", "tables", "records"} - {command}
    assert not any(f"shared.results {o}" in out for o in others)


def _two_rows_table(tmp_path):
    table = json.loads(json.dumps(TABLE))
    table["rows"][1]["metrics"] = {"top1": 90.0}
    table["rows"][1].pop("unavailable")
    table["rows"].append({**table["rows"][1], "key": "other", "variant": {"method": "ThiNet"}})
    tdir = tmp_path / "tables2"
    tdir.mkdir()
    (tdir / "dsp.yaml").write_text(yaml.safe_dump(table))
    return tdir


def test_check_prints_summary_and_only_rows_with_records_by_default(tmp_path, capsys):
    tdir = _two_rows_table(tmp_path)
    rdir = tmp_path / "recs"
    write_record(rec(top1=92.1), rdir)
    args = ["--tables", str(tdir), "--no-default-records", "--records", str(rdir)]
    assert results_main(["check", *args]) == 0
    out = capsys.readouterr().out
    assert "dsp      3 rows,   1 with records: 1 match, 0 within noise, 0 mismatch" in out
    assert " r1 " in out and " r2 " not in out and "not run" not in out.split("== Reported")[1].split("paper =")[0]
    flat = " ".join(out.split())
    assert "tol = the match tolerance" in flat and "noise = the extra band" in flat and "dsp/s: a source" in flat
    assert "'inconsistent (known)' means" in flat
    assert results_main(["check", *args, "--all"]) == 0
    out = capsys.readouterr().out
    assert " r2 " in out and " other " in out and "every reported row" in out


def test_consistency_lines_fit_the_width(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    table = json.loads(json.dumps(TABLE))
    table["checks"][1]["name"] = "a very long explanation of a known inconsistency " * 10
    tdir = tmp_path / "t"
    tdir.mkdir()
    (tdir / "dsp.yaml").write_text(yaml.safe_dump(table))
    assert results_main(["check", "--tables", str(tdir), "--no-default-records", "--all"]) == 0
    out = capsys.readouterr().out.split("== Consistency")[1]
    assert max(len(line) for line in out.splitlines()) <= 100
    assert "...: 3.0000 reported, 2.0000 recomputed" in out


def test_tables_default_to_runs_and_update_committed_on_request(tmp_path, monkeypatch, capsys):
    from shared.results import __main__ as cli

    monkeypatch.setattr(cli, "DEFAULT_TABLES_OUT", tmp_path / "runs" / "results")
    monkeypatch.setattr(cli, "COMMITTED_RESULTS", tmp_path / "results")
    monkeypatch.setattr("shared.results.tables.plot", lambda *a, **k: {})  # plots: tested elsewhere
    args = ["--tables", str(_two_rows_table(tmp_path)), "--no-default-records"]
    assert results_main(["tables", *args]) == 0
    assert (tmp_path / "runs" / "results" / "TABLES.md").is_file() and not (tmp_path / "results").exists()
    assert results_main(["tables", *args, "--update-committed"]) == 2  # never a partial committed table
    assert not (tmp_path / "results").exists()
    assert results_main(["tables", "--update-committed", "--records", str(tmp_path / "runs")]) == 2
    assert results_main(["tables", "--update-committed"]) == 0
    assert (tmp_path / "results" / "TABLES.md").is_file()
    with pytest.raises(SystemExit):  # one or the other
        results_main(["tables", *args, "--update-committed", "--out", str(tmp_path)])


def test_tables_sections_own_rows_first_and_smoke_runs_in_the_plot(tmp_path):
    from shared.results import tables

    table = json.loads(json.dumps(TABLE))
    thinet = {**table["rows"][0], "key": "thinet", "variant": {"method": "ThiNet"}}
    table["rows"].append({**thinet, "metrics": dict(thinet["metrics"])})
    table["rows"][0]["metrics"]["top1_std"] = 0.2  # the paper's spread over runs: an error bar
    ista = {**json.loads(json.dumps(TABLE)), "paper": "ista", "checks": []}
    records = [rec(top1=92.1, flops_reduction_pct=60.2)]
    smoke = [rec(kind="smoke", top1=50.0, flops_reduction_pct=10.0, n=100)]
    smoke[0]["data"]["name"] = "digits"
    all_tables = {"ista": ista, "dsp": table}
    comps, _ = chk.compare(all_tables, [("x", r) for r in records + smoke])
    md = tables.markdown(all_tables, comps, smoke, chk.run_checks("dsp", table))
    # papers with records first, in the summary, the contents and the sections
    assert md.index("[dsp](#dsp)") < md.index("[ista](#ista)") and md.index('id="dsp"') < md.index('id="ista"')
    dsp = md[md.index('id="dsp"') : md.index('id="ista"')]
    assert dsp.index("### The paper's own results, compared") < dsp.index("### Other methods, as the paper reports")
    assert "| thinet | s | ThiNet |" in dsp.split("### Other methods")[1]
    assert "thinet" not in dsp.split("### Other methods")[0]
    assert "| inconsistent (known) | known bad |" in dsp
    panel = tables._panel_data("dsp", table, comps, smoke)["cifar10"]
    assert [p[2] for p in panel["own"]] == ["r1"] and [p[2] for p in panel["other"]] == ["thinet"]
    assert panel["own"][0][3] == 0.2 and panel["other"][0][3] is None
    [(x, y, se, n)] = panel["ours"]["reproduction"]
    assert (x, y, n) == (60.2, 92.1, 10000) and se == pytest.approx(100 * (0.921 * 0.079 / 10000) ** 0.5)
    assert panel["smoke"] == [(10.0, 50.0, "digits")]  # on the row's dataset panel, marked apart


def test_ista_readme_rows_refuse_other_bn_decay_precision_accumulation():
    ista = load_tables(papers=["ista"])["ista"]

    def ista_rec(**variant):
        base = {"model": "resnet20", "version": "v2", "fold": "released-code", "alpha": 1.0}
        return make_record(
            "ista",
            "readme/cifar10/resnet20/v2",
            "reproduction",
            metrics={"top1": 91.2},
            data={"name": "cifar10", "split": "test", "n": 10000},
            variant={**base, **variant},
            convention="ista-slim",
        )

    def status(r):
        comps, _ = chk.compare({"ista": ista}, [("x", r)])
        return next(c for c in comps if c.row == "readme/cifar10/resnet20/v2" and c.metric == "top1")

    assert status(ista_rec(bn_decay=0.999, precision="float32", accum_steps=1)).status == "match"
    for key, value in (("bn_decay", 0.9), ("precision", "mixed_bfloat16"), ("accum_steps", 4)):
        c = status(ista_rec(**{key: value}))
        assert c.status == "not run" and f"variant {key}={value}" in c.note


def test_own_rows_by_method_name_or_own_methods(tmp_path):
    row = {"variant": {"method": "EKG-search"}}
    assert chk.is_own_row("ekg", row, {}) and chk.is_own_row("dcp", {"variant": {"method": "Random DCP"}}, {})
    assert chk.is_own_row("ekg", {"variant": {"method": "dense"}}, {}) and chk.is_own_row("dsp", {}, {})
    assert not chk.is_own_row("ekg", {"variant": {"method": "FPGM"}}, {})
    assert not chk.is_own_row("bip", {"variant": {"method": "hydra"}}, {})
    assert chk.is_own_row("bip", {"variant": {"method": "hydra"}}, {"own_methods": ["bip", "hydra"]})
    assert not chk.is_own_row("ekg", row, {"own_methods": ["EKG"]})
    bad = {**json.loads(json.dumps(TABLE)), "own_methods": ["ok", 3]}
    (tmp_path / "dsp.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(MalformedError, match=r"dsp.yaml: field 'own_methods\[1\]'"):
        load_table(tmp_path / "dsp.yaml")


def test_a_skipped_record_is_shown_with_its_reason(tmp_path, capsys):
    rdir = tmp_path / "recs"
    r = rec(top1=92.0)
    r["variant"]["groups"] = 2
    write_record(r, rdir)
    args = ["check", "--tables", str(_tables_dir(tmp_path)), "--no-default-records", "--records", str(rdir)]
    assert results_main(args) == 0
    out = capsys.readouterr().out
    assert " r1 " in out and "[record " in out and "skipped: variant groups=2 (row: 4)" in out


def test_demo_script_results_commands_run(tmp_path, monkeypatch, capsys):
    """The results commands of scripts/demo.sh, on a records folder holding one smoke run of the demo."""
    import shlex

    script = (Path(__file__).resolve().parents[2] / "scripts" / "demo.sh").read_text()
    lines = [ln for ln in script.splitlines() if "-m shared.results" in ln and not ln.lstrip().startswith("#")]
    assert [shlex.split(ln)[3] for ln in lines] == ["records", "check", "tables"]
    smoke = rec(kind="smoke", top1=40.0, flops_reduction_pct=50.0, n=360)
    smoke["data"]["name"] = "digits"
    write_record(smoke, tmp_path / "records")
    monkeypatch.setattr("shared.results.tables.plot", lambda *a, **k: {})  # plots: tested elsewhere
    for line in lines:
        line = line.replace('"$RECORDS"', str(tmp_path / "records")).replace('"$OUT"', str(tmp_path / "out"))
        assert results_main([*shlex.split(line)[3:], "--paper", "dsp"]) == 0  # one paper: quicker
    out = capsys.readouterr().out
    assert "1 run record(s)" in out and "1 smoke runs (not compared)" in out
    assert "### Smoke runs (1;" in (tmp_path / "out" / "TABLES.md").read_text()
