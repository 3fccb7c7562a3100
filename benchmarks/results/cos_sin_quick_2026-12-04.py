import time, torch
from ropekit import rope_frequencies
from ropekit.kernels import tablefree
torch.set_num_threads(1)
inv,_ = rope_frequencies(None, head_dim=128)
pos = torch.arange(4096)
def f32():
    a = pos.float()[:,None]*inv; return a.cos(), a.sin()
def fused(): return tablefree.cos_sin(inv, pos)
def bench(fn, n=200):
    fn(); ts=[]
    for _ in range(7):
        t=time.perf_counter()
        for _ in range(n): fn()
        ts.append((time.perf_counter()-t)/n*1e6)
    ts.sort(); return ts[3]
for run in range(2):
    a, b = bench(f32), bench(fused)
    print(f"run{run}: float32 way {a:.1f} us, fused {b:.1f} us, ratio {b/a:.2f}")
# parity: table-free rotate vs table path
from ropekit.kernels.ops import rotate_torch
q = torch.randn(2,8,64,128); k = torch.randn(2,2,64,128)
p2 = torch.arange(64)[None]*1000 + 2**40
qo, ko = tablefree.rotate(q, k, p2, inv, interleaved=False, conj=False, offset=0, backend="cpp")
qr, kr = tablefree.rotate(q, k, p2, inv, interleaved=False, conj=False, offset=0, backend="reference")
print("tablefree cpp vs torch max err", (qo-qr).abs().max().item(), (ko-kr).abs().max().item())
