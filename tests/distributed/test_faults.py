"""Faults across processes end every rank with an error naming the rank at fault, never a hang."""

from __future__ import annotations

import pytest

from tests.distributed.harness import run_ranks

pytestmark = pytest.mark.timeout(180)


def message(out, rank: int) -> tuple[str, float, str]:
    kind, seconds, text = (out / f"rank{rank}.txt").read_text().split("|", 2)
    return kind, float(seconds), text


def test_a_rank_killed_mid_fit_ends_the_other_with_an_error_naming_it(tmp_path):
    ranks = run_ranks("kill", 2, tmp_path, 120)
    assert ranks[1].returncode == -9  # SIGKILL
    assert ranks[0].returncode == 3, ranks[0].stderr[-2000:]
    kind, seconds, text = message(tmp_path, 0)
    assert kind == "DistributedError"
    assert "rank 1" in text and "stopped answering" in text, text
    assert seconds < 20 + 10  # the timeout it set (20 s), with room for the roll call


def test_a_rank_that_raises_and_stays_alive_ends_the_other_within_the_timeout(tmp_path):
    ranks = run_ranks("hang", 2, tmp_path, 120)
    assert ranks[0].returncode == 3, ranks[0].stderr[-2000:]
    kind, seconds, text = message(tmp_path, 0)
    assert kind == "DistributedError"
    assert "rank 1 failed with RuntimeError: boom at iteration 3" in text, text
    assert 8 <= seconds < 8 + 15  # waited for the 8 s timeout, then named rank 1's error
    assert message(tmp_path, 1)[2] == "boom at iteration 3"


def test_mismatched_data_on_one_rank_is_an_error_on_every_rank_before_the_first_pass(tmp_path):
    ranks = run_ranks("mismatch", 2, tmp_path, 120)
    expected = {
        "features": "n_features = 4, rank 0 has n_features = 3",
        "dtype": "dtype = float32, rank 0 has dtype = float64",
        # (a NaN is a missing value, which GaussianMixture marginalizes; an infinity is an error)
        "inf": "rank 1 cannot fit its data (ValueError: X contains 3 inf value(s)",
    }
    texts = {}
    for r in ranks:
        assert r.returncode == 0, r.stderr[-2000:]
        for line in (tmp_path / f"rank{r.rank}.txt").read_text().splitlines():
            what, kind, text = line.split("|", 2)
            assert kind == "ValueError", line
            texts[what, r.rank] = text
    for what, words in expected.items():
        if what == "inf":  # the rank with the infinity raises its own error; the other names it
            assert "inf" in texts[what, 1]
            assert words in texts[what, 0], texts[what, 0]
        else:
            assert words in texts[what, 0] and words in texts[what, 1], texts


def test_a_rank_killed_while_training_a_vae_ends_the_other_with_an_error_naming_it(tmp_path):
    ranks = run_ranks("vae_kill", 2, tmp_path, 120)
    assert ranks[1].returncode == -9
    assert ranks[0].returncode == 3, ranks[0].stderr[-2000:]
    kind, seconds, text = message(tmp_path, 0)
    assert kind == "DistributedError"
    assert "rank 1" in text and "DistributedDataParallel" in text, text
