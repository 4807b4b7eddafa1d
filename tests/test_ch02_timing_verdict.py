"""Chapter 02's timing verdict (the cell after the flag/mask/scratch timing) on made-up tables: a quiet run gets the
ordering conclusion, a disturbed one names its inflated rows (the shorter length of each pair) instead, and a length
whose middle rounds straddle the 20% line is called noise. The tables are the fixed chapter's own smoke and cpu runs
on the course machine, one of them under load (every time a whole number of scheduler ticks)."""

import numpy as np
import pytest
import torch

from notebook_cells import cell_with, code_cells

NOTEBOOK = "02_attention_masks.ipynb"
MS = 1e-3


def verdict(rows, rounds, device="cpu") -> str:
    shown: list[str] = []
    namespace = {"bench_rows": [(t, a * MS, b * MS, c * MS) for t, a, b, c in rows], "ratio_rounds": rounds,
                 "ratio_median": [float(np.median(r)) for r in rounds], "DEVICE": torch.device(device),
                 "np": np, "torch": torch, "Markdown": lambda text: text, "display": shown.append}
    exec("from course_utils.device import device_name", namespace)
    exec(compile(cell_with(code_cells(NOTEBOOK), "# The verdict, read from the table above"), "verdict", "exec"),
         namespace)
    (text,) = shown
    return text


QUIET_CPU = [(256, 0.46, 0.51, 0.89), (512, 1.74, 1.98, 3.90), (1024, 6.05, 8.93, 20.69),
             (2048, 17.05, 31.52, 115.83), (4096, 62.86, 147.54, 609.02)]
QUIET_ROUNDS = [[1.04, 1.08, 1.2], [0.97, 1.06, 1.14], [1.44, 1.51, 2.24], [1.77, 1.93, 2.1], [2.08, 2.52, 2.84]]
LOADED_SMOKE = [(128, 7.94, 7.92, 63.99), (256, 7.93, 15.96, 79.97), (512, 7.93, 15.94, 79.98),
                (1024, 13.69, 27.16, 47.00)]


def test_a_quiet_run_gets_the_ordering_conclusion():
    text = verdict(QUIET_CPU, QUIET_ROUNDS)
    assert "at T = 1,024, 2,048, 4,096; at T = 256, 512 it saved less" in text
    assert "sets in above a length" in text and "inflated" not in text and "within the timing noise" not in text
    assert "2.52x the flag's time" in text


def test_a_disturbed_run_names_the_inflated_shorter_rows_and_draws_no_ordering_conclusion():
    text = verdict(LOADED_SMOKE, [[1.0, 1.0, 1.01], [2.0, 2.0, 2.02], [1.99, 2.0, 2.03], [1.0, 1.2, 1.3, 1.4]])
    # the flag at 128 and 256 took as long as at twice the length; the scratch arm fell from 512 to 1,024
    assert "At T = 128, 256, 512 an arm took about as long as, or longer than, at twice the length" in text
    assert "sets in above a length" not in text and "not ordered by T" not in text
    assert "within the timing noise" not in text  # T = 1,024's rounds straddle the line, but the run is disturbed


def test_a_gpu_row_that_costs_the_same_at_twice_the_length_is_launch_bound_not_disturbed():
    rows = [(1024, 0.020, 0.021, 0.05), (2048, 0.020, 0.030, 0.15), (4096, 0.05, 0.09, 0.6)]
    text = verdict(rows, [[1.0, 1.05, 1.1], [1.4, 1.5, 1.6], [1.7, 1.8, 1.9]], device="meta")
    assert "inflated" not in text and "sets in above a length" in text


@pytest.mark.parametrize("rounds, noisy", [([1.0, 1.1, 1.2, 1.3, 1.4], True),   # middle half 1.1-1.3 straddles 1.25
                                           ([1.0, 1.4, 1.5, 1.6, 1.7], False)])  # one low round: not noise
def test_only_a_straddling_middle_half_is_called_noise(rounds, noisy):
    text = verdict(QUIET_CPU[-1:], [rounds])
    assert ("within the timing noise" in text) == noisy
