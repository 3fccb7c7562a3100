"""Config reading refuses what it would otherwise read wrongly: string booleans, one setting under two names with
different values, truncated numbers, a string where an object belongs (no transformers needed)."""

from __future__ import annotations

import pytest

from ropekit.hf.config import from_hf_config, load_config_file

BASE = {"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "max_position_embeddings": 2048}


def read(**changes):
    return lambda: from_hf_config({**BASE, **changes})


YARN = {"rope_type": "yarn", "original_max_position_embeddings": 4096}

CASES = [
    ("interleave string false", read(rope_interleave="false"), "'rope_interleave' must be true or false"),
    ("interleave string true", read(rope_interleave="true"), "rope_interleave"),
    ("interleave int", read(rope_interleave=1), "rope_interleave"),
    ("base twice", read(rope_theta=10000.0, rotary_emb_base=500000.0), "rope_theta=10000.0 and rotary_emb_base"),
    ("fraction twice", read(partial_rotary_factor=0.5, rotary_pct=0.25), "partial_rotary_factor=0.5 and rotary_pct"),
    ("head_dim float", read(head_dim=16.5), "'head_dim' must be a positive integer, got 16.5"),
    ("head_dim string", read(head_dim="16"), "head_dim"),
    ("head_dim zero", read(head_dim=0), "head_dim"),
    ("heads zero", read(num_attention_heads=0), "'num_attention_heads' must be a positive integer, got 0"),
    ("heads string", read(num_attention_heads="4"), "num_attention_heads"),
    ("hidden negative", read(hidden_size=-64), "hidden_size"),
    ("hidden not divisible", read(hidden_size=66), "hidden_size 66 is not divisible"),
    ("rope_scaling string", read(rope_scaling="linear"), "'rope_scaling' must be an object"),
    ("rope_parameters list", read(rope_parameters=[1, 2]), "'rope_parameters' must be an object"),
    ("rope_theta string", read(rope_theta="10000"), "rope_theta"),
    ("factor string", read(rope_scaling={"rope_type": "linear", "factor": "2"}), "'factor'"),
    ("max positions string", read(max_position_embeddings="4096"), "max_position_embeddings"),
    ("max positions zero", read(max_position_embeddings=0), "max_position_embeddings"),
    ("non-string key", lambda: from_hf_config({**BASE, 1: 2}), "config keys must be strings, got 1"),
    ("derived yarn factor < 1", read(rope_scaling=YARN), "max_position_embeddings / original_max_position_embeddings"),
    ("explicit yarn factor < 1", read(rope_scaling={**YARN, "factor": 0.5}), "'factor'"),
    ("misspelt scaling key", read(rope_scalling={"factor": 2}), "did you mean 'rope_scaling'"),
    ("scaling without type", read(rope_scaling={"factor": 2.0}), "no 'rope_type'"),
    ("mla rope head dim", read(qk_rope_head_dim=-1), "qk_rope_head_dim"),
    ("gptj rotary_dim float", read(model_type="gptj", rotary_dim=8.5), "rotary_dim"),
    ("config a list", lambda: from_hf_config([1, 2]), "config must be a mapping"),
    ("missing sizes", lambda: from_hf_config({"model_type": "llama"}), "needs 'head_dim'"),
    ("nested without layer type", read(rope_parameters={"full": {"rope_type": "default"}}), "pass layer_type"),
]


@pytest.mark.parametrize("make, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_config_names_the_key(make, message):
    with pytest.raises(ValueError) as info:
        make()
    assert message in str(info.value)


@pytest.mark.parametrize(
    "content, message",
    [(None, "does not exist"), ("{bad", "is not valid JSON"), ("[1]", "must hold a JSON object"), ("dir", "folder")],
)
def test_config_file_errors_name_the_file(tmp_path, content, message):
    path = tmp_path / "config.json"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        load_config_file(path)
    assert "--config" in str(info.value) and str(path) in str(info.value)


def test_agreeing_duplicates_and_json_booleans_are_read():
    out = from_hf_config(
        {**BASE, "rope_theta": 1e4, "rotary_emb_base": 1e4, "rope_interleave": False, "head_dim": 16.0}
    )
    assert out["interleaved"] is False and out["head_dim"] == 16
    assert from_hf_config({**BASE, "rope_interleave": True})["interleaved"] is True
