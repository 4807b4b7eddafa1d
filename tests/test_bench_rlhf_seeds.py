"""benchmarks/bench_rlhf_seeds.py runs chapter 05's own cells, found by marker strings: the markers and seed sites must
match the notebook as it is, and a notebook that drifted must stop the script with a clear message (no training
here)."""

import json
import math
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PATH = ROOT / "benchmarks" / "bench_rlhf_seeds.py"


@pytest.fixture(scope="module")
def bench(benchmark_script):
    return benchmark_script("bench_rlhf_seeds")


def test_every_marker_finds_one_cell_and_the_seed_sites_move(bench):
    cells = bench.find_cells()
    assert list(cells) == [name for name, _ in bench.CELLS]
    assert bench.with_seed_offset(cells, 0) == cells  # offset 0 is the notebook's own run
    shifted = bench.with_seed_offset(cells, 100)
    assert "make_generator(6 + 100, DEVICE)" in shifted["PPO sweep"]
    assert "make_generator(20 + 100 + part, DEVICE)" in shifted["over-optimisation"]
    assert {k for k in cells if shifted[k] != cells[k]} == {"PPO sweep", "over-optimisation"}
    with pytest.raises(ValueError, match="seed offset"):
        bench.with_seed_offset(cells, -1)


def test_a_drifted_notebook_stops_with_the_marker_named(bench, tmp_path):
    nb = json.loads(bench.NOTEBOOK.read_text())
    nb["cells"] = [c for c in nb["cells"] if "def train_on(beta):" not in "".join(c["source"])]
    drifted = tmp_path / "05_rlhf.ipynb"
    drifted.write_text(json.dumps(nb))
    with pytest.raises(LookupError, match="over-optimisation cell.*'def train_on\\(beta\\):'.*0 code"):
        bench.find_cells(drifted)
    cells = bench.find_cells()
    cells["PPO sweep"] = cells["PPO sweep"].replace("make_generator(6, DEVICE)", "make_generator(7, DEVICE)")
    with pytest.raises(LookupError, match="seed expression"):
        bench.with_seed_offset(cells, 100)


def test_spread_is_the_seed_sd_over_the_mean_sampling_error(bench):
    mean, sd, se, ratio = bench.spread([0.0, 0.2, 0.4], [0.02, 0.02, 0.02])
    assert (round(mean, 12), round(sd, 12), round(se, 12), round(ratio, 9)) == (0.2, 0.2, 0.02, 10.0)
    assert math.isnan(bench.spread([0.1], [0.02])[1])


def test_section_8_prints_its_verdicts_and_asserts_only_the_wide_margin_facts(bench):
    # whether section 8 shows reward hacking, and whether the penalised control is ahead, depend on the CPU and the
    # training seed (benchmarks/RESULTS.md, chapter 05: one cpu run passed `hacked` by the narrowest margin), so both
    # are printed in every profile; it asserts exactly the two facts that held by wide margins in every recorded run
    cell = bench.find_cells()["over-optimisation"]
    asserts = [line.strip().split(",")[0] for line in cell.splitlines() if line.strip().startswith("assert ")]
    assert asserts == ["assert last_eval.kl > first_eval.kl", "assert proxy_up"], asserts
    assert 'PROFILE == "cpu"' not in cell
    assert 'print(f"section 8 verdict' in cell and "'shown' if hacked else 'not shown'" in cell
