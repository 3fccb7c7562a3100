"""Layout conversion end to end: an interleaved-trained attention block runs in half pairing after
convert_qk_layout, and ``ropekit convert-layout`` rewrites safetensors checkpoints atomically."""

import json
import os

import pytest
import torch

pytest.importorskip("transformers")

from safetensors.torch import load_file, save_file

from ropekit import RotaryEmbedding, convert_qk_layout
from ropekit.cli import main
from ropekit.hf.convert import convert_state_dict
from ropekit.hf.families import tiny_model


class Attention(torch.nn.Module):
    """Causal GQA attention with rotary q/k: x [B, T, C] -> [B, T, C]."""

    def __init__(self, C=64, H=4, Hk=2, partial=1.0, interleaved=False):
        super().__init__()
        self.H, self.Hk, self.D = H, Hk, C // H
        self.q, self.k = torch.nn.Linear(C, H * self.D), torch.nn.Linear(C, Hk * self.D)
        self.v, self.o = torch.nn.Linear(C, Hk * self.D), torch.nn.Linear(H * self.D, C)
        params = {"rope_type": "default", "partial_rotary_factor": partial}
        self.rope = RotaryEmbedding(self.D, params, interleaved=interleaved)

    def forward(self, x):
        B, T, _ = x.shape
        q = self.q(x).view(B, T, self.H, self.D).transpose(1, 2)  # [B, H, T, D]
        k = self.k(x).view(B, T, self.Hk, self.D).transpose(1, 2)  # [B, Hk, T, D]
        v = self.v(x).view(B, T, self.Hk, self.D).transpose(1, 2)
        q, k = self.rope(q, k)
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        return self.o(y.transpose(1, 2).reshape(B, T, -1))  # [B, T, C]


@pytest.mark.parametrize("partial", [1.0, 0.5])
def test_interleaved_block_converted_to_half_and_back(partial):
    torch.manual_seed(0)
    src = Attention(partial=partial, interleaved=True)
    x = torch.randn(2, 12, 64)
    ref = src(x)
    dst = Attention(partial=partial, interleaved=False)
    dst.load_state_dict(src.state_dict())
    assert (dst(x) - ref).abs().max() > 1e-3  # wrong pairing without conversion: the #1 silent bug
    rd = int(16 * partial)
    with torch.no_grad():
        for lin, n in ((dst.q, 4), (dst.k, 2)):
            lin.weight.copy_(convert_qk_layout(lin.weight, n, 16, to="half", rotary_dim=rd))
            lin.bias.copy_(convert_qk_layout(lin.bias, n, 16, to="half", rotary_dim=rd))
    assert (dst(x) - ref).abs().max() < 1e-5
    back = Attention(partial=partial, interleaved=True)
    back.load_state_dict(dst.state_dict())
    with torch.no_grad():
        for lin, n in ((back.q, 4), (back.k, 2)):
            lin.weight.copy_(convert_qk_layout(lin.weight, n, 16, to="interleaved", rotary_dim=rd))
            lin.bias.copy_(convert_qk_layout(lin.bias, n, 16, to="interleaved", rotary_dim=rd))
    assert torch.equal(back.q.weight, src.q.weight) and torch.equal(back(x), ref)


def _write(tmp_path, family):
    model, _ = tiny_model(family, "default")
    sd = {k: v.contiguous() for k, v in model.state_dict().items() if "rotary" not in k}
    sd.pop("lm_head.weight", None)  # tied to the embedding in some families
    ckpt = tmp_path / "model.safetensors"
    save_file(sd, str(ckpt), metadata={"format": "pt"})
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(model.config.to_dict()))
    return sd, ckpt, cfg


@pytest.mark.parametrize("family", ["llama", "phi3", "gpt_neox"])
def test_convert_layout_command_round_trip(tmp_path, family, capsys):
    sd, ckpt, cfg = _write(tmp_path, family)
    out = tmp_path / "inter.safetensors"
    flags = ["--config", str(cfg), "--to", "interleaved", "--from", "half", "-o", str(out)]
    assert main(["convert-layout", str(ckpt), *flags]) == 0
    assert "converted" in capsys.readouterr().out
    inter = load_file(str(out))
    changed = [k for k in sd if not torch.equal(sd[k], inter[k])]
    assert changed and all(any(s in k for s in ("q_proj", "k_proj", "qkv_proj", "query_key_value")) for k in changed)
    assert main(["convert-layout", str(out), "--config", str(cfg), "--to", "half"]) == 0  # in place
    back = load_file(str(out))
    assert all(torch.equal(sd[k], back[k]) for k in sd)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]  # temp file renamed, none left


def test_fused_qkv_rows_match_separate_conversion():
    model, _ = tiny_model("phi3", "default")
    w = model.model.layers[0].self_attn.qkv_proj.weight.detach()  # [(4 + 2 + 2) * 16, 64]
    new, _ = convert_state_dict(
        {"model.layers.0.self_attn.qkv_proj.weight": w}, model.config.to_dict(), to="interleaved"
    )
    q, k, v = new["model.layers.0.self_attn.qkv_proj.weight"].split([64, 32, 32])
    assert torch.equal(q, convert_qk_layout(w[:64], 4, 16, to="interleaved"))
    assert torch.equal(k, convert_qk_layout(w[64:96], 2, 16, to="interleaved")) and torch.equal(v, w[96:])


def test_convert_layout_refuses_bad_inputs(tmp_path, capsys):
    _, _, cfg = _write(tmp_path, "llama")
    pickle = tmp_path / "model.bin"
    pickle.write_bytes(b"not read")
    assert main(["convert-layout", str(pickle), "--config", str(cfg), "--to", "half"]) == 2
    assert "never a pickle" in capsys.readouterr().err
    save_file({"embed.weight": torch.zeros(2, 2)}, str(tmp_path / "other.safetensors"))
    other = str(tmp_path / "other.safetensors")
    assert main(["convert-layout", other, "--config", str(cfg), "--to", "half", "--from", "interleaved"]) == 2
    assert "no q/k projection" in capsys.readouterr().err
