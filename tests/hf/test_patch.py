"""ropekit.hf.patch: logits equal transformers' for every family x rope case, prefill and cached decode."""

import pytest
import torch

pytest.importorskip("transformers")

from ropekit.hf import RopekitRotary, is_patched, patch, unpatch
from ropekit.hf.families import FAMILIES, ROPE_CASES, UnsupportedCase, tiny_model
from ropekit.hf.parity_table import measure

TOL = 1e-5  # float32 logits of a 2-layer model; measured differences are ~3e-7


@pytest.mark.parametrize("case", ROPE_CASES)
@pytest.mark.parametrize("family", list(FAMILIES))
def test_logits_match_transformers(family, case):
    try:
        prefill, decode = measure(family, case)
    except UnsupportedCase:
        assert family == "phi3" and case not in ("default", "ntk", "longrope")  # Phi3Config's own restriction
        return
    assert prefill < TOL and decode < TOL, (prefill, decode)


@torch.no_grad()
@pytest.mark.parametrize("family", list(FAMILIES))
def test_patched_module_is_the_one_that_runs(family):
    model, _ = tiny_model(family, "default")
    ids = _ids(T=12)
    ref = model(ids).logits
    patch(model, rope_parameters={"rope_type": "default", "rope_theta": 300.0})
    assert (model(ids).logits - ref).abs().max() > 1e-4  # a parity of 1e-7 above is not vacuous


def _ids(T=24, B=2, seed=0):
    return torch.randint(3, 128, (B, T), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def test_patch_is_used_per_instance_and_unpatch_restores_the_object():
    model, _ = tiny_model("llama", "default")
    other, _ = tiny_model("llama", "default")
    original = model.model.rotary_emb
    ids = _ids()
    ref = model(ids).logits
    names = patch(model, rope_parameters={"rope_type": "default", "rope_theta": 500.0})
    assert names == ["model.rotary_emb"] and isinstance(model.model.rotary_emb, RopekitRotary)
    assert (model(ids).logits - ref).abs().max() > 1e-3  # the patched module is what runs
    assert not is_patched(other) and type(other.model.rotary_emb) is type(original)  # other instance untouched
    with pytest.raises(ValueError, match="already patched"):
        patch(model)
    assert unpatch(model) == ["model.rotary_emb"]
    assert model.model.rotary_emb is original
    assert torch.equal(model(ids).logits, ref)
    with pytest.raises(ValueError, match="not patched"):
        unpatch(model)
    assert "rotary_emb" not in "".join(model.state_dict())  # nothing persistent added


def test_bad_override_leaves_model_untouched():
    model, _ = tiny_model("qwen3", "default")
    original = model.model.rotary_emb
    with pytest.raises(ValueError, match="factr"):
        patch(model, rope_parameters={"rope_type": "linear", "factr": 2.0})
    assert model.model.rotary_emb is original
    with pytest.raises(ValueError, match="no rotary embedding"):
        patch(torch.nn.Linear(2, 2))


@torch.no_grad()
@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_left_padding_and_packed_positions(family):
    model, _ = tiny_model(family, "yarn")
    ids = _ids(T=12)
    mask = torch.ones_like(ids)
    mask[0, :5] = 0  # left padding on row 0
    position_ids = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)  # what generate() builds
    packed = torch.cat((torch.arange(5), torch.arange(7))).expand(2, 12)  # two documents, positions restart
    ref_pad = model(ids, attention_mask=mask, position_ids=position_ids).logits
    ref_packed = model(ids, position_ids=packed).logits
    patch(model)
    pad = model(ids, attention_mask=mask, position_ids=position_ids).logits
    got_packed = model(ids, position_ids=packed).logits
    assert (pad - ref_pad)[mask.bool()].abs().max() < TOL
    assert (got_packed - ref_packed).abs().max() < TOL


@torch.no_grad()
def test_positions_past_the_context_extend():
    model, _ = tiny_model("mistral", "linear")  # max_position_embeddings 32
    ids = _ids(T=8)
    far = torch.arange(3000, 3008).expand(2, 8)
    ref = model(ids, position_ids=far).logits
    patch(model)
    got = model(ids, position_ids=far).logits  # no IndexError; transformers' float32 angles drift ~1e-4 rad here
    assert (got - ref).abs().max() < 1e-3


@torch.no_grad()
def test_negative_and_fractional_positions_raise_unless_allowed():
    model, _ = tiny_model("llama", "default")
    ids = _ids(T=4)
    neg = torch.tensor([[-2, -1, 0, 1]] * 2)
    frac = torch.tensor([[0.0, 0.5, 1.0, 1.5]] * 2)
    ref_neg, ref_frac = model(ids, position_ids=neg).logits, model(ids, position_ids=frac).logits
    patch(model)
    with pytest.raises(ValueError, match="negative"):
        model(ids, position_ids=neg)
    with pytest.raises(ValueError, match="allow_fractional"):
        model(ids, position_ids=frac)
    unpatch(model)
    patch(model, allow_negative=True, allow_fractional=True)
    assert (model(ids, position_ids=neg).logits - ref_neg).abs().max() < TOL
    assert (model(ids, position_ids=frac).logits - ref_frac).abs().max() < TOL


@torch.no_grad()
def test_dynamic_high_water_mark_modes():
    """transformers keeps the largest length seen: a shorter (but > original) sequence after a long one
    reuses the long one's base. mode='transformers' reproduces that; mode='current' does not."""
    model, _ = tiny_model("llama", "dynamic")  # threshold 16
    long, short = _ids(T=30), _ids(T=20, seed=1)
    model(long)
    ref = model(short).logits  # rotated with the base of length 30
    patch(model)
    model(long)
    assert (model(short).logits - ref).abs().max() < TOL
    unpatch(model)
    patch(model, mode="current")
    model(long)
    assert (model(short).logits - ref).abs().max() > 1e-4
