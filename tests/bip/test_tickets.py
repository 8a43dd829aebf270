"""Table 1's winning-ticket step on hand-made curve records: the sparsest k whose mean accuracy over the
seeds reaches the dense mean, mean +- sample std there, 'x' when none, HYDRA after its fine-tuning only,
variants kept apart; the ticket record then matches the paper's Table 1 row in `shared.results check`."""

import statistics

import pytest

from bip_torch.tickets import main as tickets_main
from shared.results.__main__ import main as results_main
from shared.results.records import iter_records, make_record, write_record

pytestmark = pytest.mark.torch
FULL_TEST = {"name": "cifar10", "split": "test", "n": 10_000}
LABEL = {0.41: 59.0, 0.328: 67.2, 0.262: 73.8}


def _write(folder, method, k, seed, top1, exp_mode, **variant):
    v = {"method": method, "exp_mode": exp_mode, "layer_type": "unstructured" if method != "dense" else "dense",
         "k": k, **variant}  # fmt: skip
    rec = make_record("bip", None, "reproduction", metrics={"top1": top1, "sparsity_pct": 100 * (1 - k)},
                      data=FULL_TEST, variant=v, seed=seed,
                      config={"dataset": "CIFAR10", "arch": "resnet20s"})  # fmt: skip
    if k in LABEL:
        rec["metrics"]["sparsity_pct"] = LABEL[k]
    write_record(rec, folder)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    folder = tmp_path_factory.mktemp("records")
    for seed, acc in zip((1, 2, 3), (92.10, 92.12, 92.14)):  # dense mean 92.12
        _write(folder, "dense", 1.0, seed, acc, "pretrain")
    curve = {0.41: (92.3, 92.2, 92.1), 0.328: (92.0, 92.14, 92.28), 0.262: (92.0, 92.1, 92.2)}  # 92.2, 92.14, 92.1
    for k, accs in curve.items():
        for seed, acc in zip((1, 2, 3), accs):
            _write(folder, "bip", k, seed, acc, "prune", trainer="bilevel", bip_variant="code")
            # the paper's variant: its own curve (here it wins at the sparsest point too)
            _write(folder, "bip", k, seed, acc + 0.2, "prune", trainer="bilevel", bip_variant="paper")
            # HYDRA: the prune stage alone would win everywhere; after fine-tuning it never does
            _write(folder, "hydra", k, seed, 95.0, "prune", trainer="base")
            _write(folder, "hydra", k, seed, acc - 0.5, "finetune", trainer="base")
    tickets_main(["--records", str(folder)])
    found = [r for _, r in iter_records([folder]) if r["row"] and r["row"].startswith("table1/")]
    # one ticket per curve: BiP as coded, BiP as the paper, HYDRA after fine-tuning (its prune stage is none)
    assert len(found) == 3
    return {(r["variant"]["method"], r["variant"].get("bip_variant")): r for r in found}


def test_sparsest_winning_ticket_by_hand(records):
    bip = records["bip", "code"]
    assert bip["row"] == "table1/cifar10/resnet20/bip" and bip["kind"] == "reproduction"
    # 73.8 % averages 92.10 < 92.12: the sparsest winner is 67.2 % (mean 92.14)
    assert bip["metrics"]["winning_ticket"] == 1 and bip["config"]["ticket_k"] == 0.328
    assert bip["metrics"]["sparsity_pct"] == pytest.approx(67.2)
    assert bip["metrics"]["top1"] == pytest.approx(92.14)
    assert bip["metrics"]["top1_std"] == pytest.approx(statistics.stdev([92.0, 92.14, 92.28]))  # n - 1
    assert bip["metrics"]["dense_top1"] == pytest.approx(92.12) and bip["config"]["seeds"] == [1, 2, 3]
    assert "k" not in bip["variant"] and bip["variant"]["trainer"] == "bilevel"


def test_variants_are_separate_curves_and_hydra_counts_after_finetuning(records):
    assert records["bip", "paper"]["config"]["ticket_k"] == 0.262
    hydra = records["hydra", None]
    assert hydra["metrics"]["winning_ticket"] == 0 and "top1" not in hydra["metrics"]  # 'x'
    assert len(hydra["config"]["curve"]) == 3 and hydra["variant"]["trainer"] == "base"


def test_check_compares_the_ticket_with_table_1(records, capsys, tmp_path):
    folder = tmp_path / "only"
    write_record(records["bip", "code"], folder)
    results_main(["check", "--paper", "bip", "--records", str(folder), "--no-default-records", "--only-run"])
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "table1/cifar10/resnet20/bip" in line]
    assert lines, out[-2000:]
    assert all("mismatch" not in line for line in lines) and any("match" in line for line in lines)


def test_no_records_and_a_missing_folder(tmp_path, capsys):
    assert tickets_main(["--records", str(tmp_path)]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert tickets_main(["--records", str(tmp_path / "nope")]) == 2
    assert "is not a folder" in capsys.readouterr().err
