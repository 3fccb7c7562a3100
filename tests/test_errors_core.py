"""Core bad inputs outside the scaling registry (tests/test_errors.py has those): KV-cache eviction, N-D rotary,
the file writer and folder guard, training tasks. Each asserts the exception type and the argument's name."""

from __future__ import annotations

import pytest
import torch

import ropekit as rk
from ropekit.cache import evict, sink_window_keep
from ropekit.fileio import OutputFolderError, atomic_write, claim_output_folder
from ropekit.nd import apply_rotary_nd, axial_frequencies, grid_positions
from ropekit.nd.functional import apply_liere

K = torch.randn(1, 2, 6, 8)
ROPE = rk.RotaryEmbedding(8)
FREQS = axial_frequencies([2, 2])
POS = grid_positions(2, 3)  # [6, 2]


def ev(keep):
    return lambda: evict(K, K, keep, ROPE)


CASES = [
    ("evict unsorted", ev(torch.tensor([3, 1])), ValueError, "unsorted indices"),
    ("evict duplicates", ev(torch.tensor([1, 1, 2])), ValueError, "duplicates"),
    ("evict list unsorted", ev([4, 2]), ValueError, "strictly increasing"),
    ("evict mask wrong length", ev(torch.ones(5, dtype=torch.bool)), ValueError, "bool keep mask must have"),
    ("evict float", ev(torch.tensor([0.0, 1.0])), ValueError, "keep must be a 1-D integer index tensor"),
    ("evict 2-D", ev(torch.tensor([[0, 1]])), ValueError, "keep must be a 1-D"),
    ("evict out of range", ev(torch.tensor([0, 6])), ValueError, "keep indices must lie in [0, 6)"),
    ("evict negative", ev([-1, 0]), ValueError, "keep indices must lie"),
    ("evict list of strings", ev(["a"]), ValueError, "keep must be a list of integer"),
    ("evict dict", ev({0: 1}), ValueError, "keep must be a tensor"),
    ("evict k/v shapes", lambda: evict(K, K[..., :3, :], [0], ROPE), ValueError, "k and v must be"),
    ("sink negative window", lambda: sink_window_keep(8, n_sink=1, window=-1), ValueError, "window"),
    ("sink bool n_sink", lambda: sink_window_keep(8, n_sink=True, window=2), ValueError, "n_sink"),
    ("nd integer x", lambda: apply_rotary_nd(torch.ones(6, 8, dtype=torch.long), FREQS, POS), ValueError, "x must"),
    ("nd bool x", lambda: apply_rotary_nd(torch.ones(6, 8, dtype=torch.bool), FREQS, POS), ValueError, "x must"),
    ("nd 1-D x", lambda: apply_rotary_nd(torch.ones(8), FREQS, POS), ValueError, "x must be a floating-point"),
    ("nd x list", lambda: apply_rotary_nd([1.0], FREQS, POS), TypeError, "x must be a torch.Tensor"),
    ("nd interleaved string", lambda: apply_rotary_nd(K, FREQS, POS, interleaved="no"), ValueError, "interleaved"),
    (
        "liere integer x",
        lambda: apply_liere(torch.ones(6, 8, dtype=torch.int32), torch.zeros(2, 8, 8), POS),
        ValueError,
        "x must",
    ),
    ("nd module interleaved", lambda: rk.nd.AxialRotaryEmbedding(8, 2, interleaved="no"), ValueError, "interleaved"),
]


@pytest.mark.parametrize("make, exc, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_core_bad_input(make, exc, message):
    with pytest.raises(exc) as info:
        make()
    assert message in str(info.value)


def test_evict_accepts_a_list_and_a_bool_mask():
    by_index = evict(K, K, torch.tensor([0, 2, 5]), ROPE)
    by_list = evict(K, K, [0, 2, 5], ROPE)
    mask = torch.zeros(6, dtype=torch.bool)
    mask[[0, 2, 5]] = True
    by_mask = evict(K, K, mask, ROPE)
    assert all(torch.equal(a, b) and torch.equal(a, c) for a, b, c in zip(by_index, by_list, by_mask, strict=True))


def test_file_and_folder_errors(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="is a folder"):
        atomic_write(tmp_path, b"x")
    with pytest.raises(ValueError, match="does not exist"):
        atomic_write(tmp_path / "none" / "f", b"x")
    with pytest.raises(OutputFolderError, match=r"--out .* is a file"):
        claim_output_folder(tmp_path / "f", command="train", entries=[])
    with pytest.raises(OutputFolderError, match=r"-o .* is not empty"):
        claim_output_folder(tmp_path, command="report", entries=[], flag="-o")


def test_task_counts_are_checked():
    from ropekit.train import ClassifyTask, LMTask, ReverseTask

    s = torch.arange(100)
    with pytest.raises(ValueError, match="context_len must be a positive integer, got 0"):
        LMTask(s, s, context_len=0, vocab_size=10)
    with pytest.raises(ValueError, match="eval_windows"):
        LMTask(s, s, context_len=4, vocab_size=10, eval_windows=0)
    with pytest.raises(ValueError, match="n_classes"):
        ClassifyTask(None, None, vocab_size=10, n_classes=0)
    with pytest.raises(ValueError, match="max_span must be an integer >= 8"):
        ReverseTask(s, s, vocab_size=10, pad_id=0, bos_id=1, eos_id=2, max_span=4)
    with pytest.raises(TypeError):
        LMTask(s, s, 4, 10)  # keyword arguments only: no positional lists


def test_non_finite_inv_freq_is_refused():
    import pytest
    import torch

    from ropekit import rope_angles, rope_cos_sin

    for bad in (float("nan"), float("inf")):
        inv = torch.tensor([1.0, bad])
        for fn in (rope_cos_sin, rope_angles):
            with pytest.raises(ValueError, match="inv_freq must be finite"):
                fn(inv, torch.arange(4))


def test_inv_freq_changed_in_place_after_a_check_is_checked_again() -> None:
    """The finite check is cached per tensor version: an in-place NaN after a clean call is still refused."""
    import ropekit

    inv, _ = ropekit.rope_frequencies(None, head_dim=16)
    inv = inv.clone()
    ropekit.rope_cos_sin(inv, torch.arange(4))
    inv[2] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        ropekit.rope_cos_sin(inv, torch.arange(4))
