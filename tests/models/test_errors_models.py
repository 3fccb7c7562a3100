"""Model configs and position encodings refuse values they would accept and then get wrong (NaN logits, a wrong
pairing, a truncated length): ``ValueError`` naming the argument."""

from __future__ import annotations

import pytest

from ropekit.models import ModelConfig
from ropekit.models.positions import Dims, build_position_encoding, normalise_position_spec

DIMS = Dims(d_model=32, n_heads=4, head_dim=8, max_len=64)


def cfg(**kw):
    return lambda: ModelConfig(**{"d_model": 32, "n_heads": 4, "n_layers": 1, **kw})


def pe(spec):
    return lambda: build_position_encoding(spec, DIMS)


CASES = [
    ("n_layers -1", cfg(n_layers=-1), "n_layers must be a positive integer, got -1"),
    ("n_layers 0", cfg(n_layers=0), "n_layers"),
    ("n_layers float", cfg(n_layers=1.5), "n_layers"),
    ("n_classes 0", cfg(task="classify", n_classes=0), "n_classes"),
    ("n_classes 1 classify", cfg(task="classify", n_classes=1), "n_classes must be >= 2"),
    ("n_heads 0", cfg(n_heads=0), "n_heads must be a positive integer, got 0"),
    ("n_heads bool", cfg(n_heads=True), "n_heads"),
    ("d_model negative", cfg(d_model=-64), "d_model must be a positive integer, got -64"),
    ("d_model float", cfg(d_model=64.0), "d_model must be a positive integer, got 64.0"),
    ("d_model string", cfg(d_model="64"), "d_model"),
    ("d_model not divisible", cfg(d_model=30), "d_model=30 must be divisible by n_heads=4"),
    ("vocab_size 0", cfg(vocab_size=0), "vocab_size"),
    ("max_len 0", cfg(max_len=0), "max_len"),
    ("max_len negative", cfg(max_len=-1), "max_len"),
    ("n_kv_heads 0", cfg(n_kv_heads=0), "n_kv_heads"),
    ("n_kv_heads not dividing", cfg(n_kv_heads=3), "n_kv_heads=3 must divide n_heads=4"),
    ("d_ff 0", cfg(d_ff=0), "d_ff"),
    ("dropout 1.5", cfg(dropout=1.5), "dropout must be a number in [0, 1)"),
    ("dropout string", cfg(dropout="0.1"), "dropout"),
    ("dropout negative", cfg(dropout=-0.1), "dropout"),
    ("task unknown", cfg(task="mlm"), "task must be one of"),
    ("unknown key", lambda: ModelConfig.from_dict({"n_layer": 2}), "did you mean 'n_layers'"),
    ("pe unknown kind", cfg(pe={"kind": "rotary"}), "unknown position encoding 'rotary'"),
    ("pe without kind", cfg(pe={"rope_theta": 1}), "has no 'kind'"),
    ("xpos scale_base 0", pe({"kind": "xpos", "scale_base": 0}), "xpos scale_base must be a finite number > 0"),
    ("xpos scale_base negative", pe({"kind": "xpos", "scale_base": -512}), "scale_base"),
    ("xpos scale_base nan", pe({"kind": "xpos", "scale_base": float("nan")}), "scale_base"),
    ("sinusoidal base 0", pe({"kind": "sinusoidal", "base": 0}), "sinusoidal base must be a finite number > 0"),
    ("sinusoidal base inf", pe({"kind": "sinusoidal", "base": float("inf")}), "sinusoidal base"),
    ("sinusoidal base string", pe({"kind": "sinusoidal", "base": "1e4"}), "sinusoidal base"),
    ("sinusoidal scale 0", pe({"kind": "sinusoidal", "scale": 0}), "sinusoidal scale"),
    ("random_max text", pe({"kind": "rope", "random_max": "abc"}), "random_max must be a positive integer"),
    ("random_max float", pe({"kind": "alibi", "random_max": 2.5}), "random_max"),
    ("random_max 0", pe({"kind": "rope", "random_max": 0}), "random_max"),
    ("rope interleaved string", pe({"kind": "rope", "interleaved": "no"}), "interleaved must be True or False"),
    ("rope interleaved int", pe({"kind": "rope", "interleaved": 1}), "interleaved"),
    ("xpos interleaved string", pe({"kind": "xpos", "interleaved": "false"}), "interleaved"),
    ("learned_freq interleaved", pe({"kind": "learned_freq", "interleaved": "yes"}), "interleaved"),
    ("receptive interleaved", pe({"kind": "receptive", "interleaved": "no"}), "interleaved"),
    ("receptive learn_rho", pe({"kind": "receptive", "learn_rho": "no"}), "learn_rho"),
    ("receptive alpha 0", pe({"kind": "receptive", "alpha": 0}), "alpha"),
    ("receptive alpha bool", pe({"kind": "receptive", "alpha": True}), "alpha"),
    ("prope p 0", pe({"kind": "prope", "p": 0}), "p=0"),
    ("prope p 2", pe({"kind": "prope", "p": 2}), "p=2"),
    ("prope p bool", pe({"kind": "prope", "p": True}), "p=True"),
    ("prope interleaved", pe({"kind": "prope", "interleaved": "no"}), "interleaved"),
    ("option of another kind", pe({"kind": "alibi", "p": 0.5}), "unknown option(s) ['p'] for position encoding"),
    ("yarn alias bad factor", pe({"kind": "yarn", "rope_parameters": {"factor": 0.5}}), "'factor'"),
    ("alias misspelt", lambda: normalise_position_spec("yarm"), "did you mean 'yarn'"),
]


@pytest.mark.parametrize("make, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_model_input_names_the_argument(make, message):
    with pytest.raises(ValueError) as info:
        make()
    assert message in str(info.value)


def test_save_model_never_overwrites_a_folder_it_did_not_write(tmp_path):
    from ropekit.fileio import OutputFolderError
    from ropekit.models import build_model, load_model, save_model

    model = build_model(ModelConfig(d_model=16, n_heads=2, n_layers=1, max_len=8))
    (tmp_path / "config.json").write_text('{"the": "user\'s"}')
    with pytest.raises(OutputFolderError, match=r"folder .* is not empty"):
        save_model(model, tmp_path)
    assert (tmp_path / "config.json").read_text() == '{"the": "user\'s"}'
    save_model(model, tmp_path / "m")
    save_model(model, tmp_path / "m")  # its own folder: saved again
    assert load_model(tmp_path / "m").config == model.config
