"""C++ source of the fused CPU rotary kernel, compiled on first use by :mod:`ropekit.kernels.cpu`.

Legend: ``q: [B, Hq, T, D]``, ``k: [B, Hk, T, D]`` (any strides, unit stride on D), ``r = rotary_dim / 2``;
``cos, sin: [Bc, Hc, Tc, r]`` with each leading size 1 (broadcast) or full, or, with ``positions: [Bp, T]`` int64,
tables ``[L, r]`` whose row ``positions[b, t]`` is used for token t of batch b.

One pass over the rows of q and then k (``at::parallel_for`` over ``B*Hq*T + B*Hk*T`` rows). Each row is widened
to the compute type in registers (float for fp32/bf16/fp16, double for fp64), rotated, narrowed once on store
(bf16 rounds to nearest even like torch), so a row is read once and written once: the memory floor.
``conj`` rotates by minus the angle (the backward). In place when the output pointers equal the inputs.
"""

CPP_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <cstdint>
#include <cstring>
#include <cmath>

namespace {

// Storage <-> compute conversions. bf16 by bit shifts so GCC vectorises them; narrowing rounds to nearest even.
struct F32 { using raw = float; using acc = float;
  static inline float ld(float v) { return v; } static inline float st(float v) { return v; } };
struct F64 { using raw = double; using acc = double;
  static inline double ld(double v) { return v; } static inline double st(double v) { return v; } };
struct F16 { using raw = _Float16; using acc = float;
  static inline float ld(_Float16 v) { return (float)v; } static inline _Float16 st(float v) { return (_Float16)v; } };
struct BF16 { using raw = uint16_t; using acc = float;
  static inline float ld(uint16_t u) { uint32_t w = (uint32_t)u << 16; float f; std::memcpy(&f, &w, 4); return f; }
  static inline uint16_t st(float v) {
    uint32_t w; std::memcpy(&w, &v, 4);
    uint32_t rounded = (w + 0x7FFFu + ((w >> 16) & 1u)) >> 16;
    return (uint16_t)(std::isnan(v) ? 0x7FC0u : rounded);
  } };

struct Side {  // one of q / k, viewed as [B, H, T, D]
  const void* x; void* o; int64_t B, H, T, D;
  int64_t xb, xh, xt, ob, oh, ot;   // element strides
  int64_t cb, ch, ct;               // cos/sin strides (0 where broadcast); unused with positions
};

// Inner loops on non-aliasing pointers (restrict lets GCC vectorise without alias checks).
template <typename S, bool CONJ>
inline void rot_half(const typename S::raw* __restrict__ xa, const typename S::raw* __restrict__ xb,
                     typename S::raw* __restrict__ oa, typename S::raw* __restrict__ ob,
                     const typename S::acc* __restrict__ c, const typename S::acc* __restrict__ s, int64_t n) {
  using A = typename S::acc;
  for (int64_t j = 0; j < n; ++j) {
    A a = S::ld(xa[j]), b = S::ld(xb[j]);
    A cj = c[j], sj = CONJ ? -s[j] : s[j];
    oa[j] = S::st(a * cj - b * sj);
    ob[j] = S::st(b * cj + a * sj);
  }
}

template <typename S, bool CONJ>
inline void rot_inter(const typename S::raw* __restrict__ x, typename S::raw* __restrict__ o,
                      const typename S::acc* __restrict__ c, const typename S::acc* __restrict__ s, int64_t n) {
  using A = typename S::acc;
  for (int64_t j = 0; j < n; ++j) {
    A a = S::ld(x[2 * j]), b = S::ld(x[2 * j + 1]);
    A cj = c[j], sj = CONJ ? -s[j] : s[j];
    o[2 * j] = S::st(a * cj - b * sj);
    o[2 * j + 1] = S::st(b * cj + a * sj);
  }
}

constexpr int64_t kBlock = 64;  // pairs staged through a stack buffer when rotating in place

template <typename S, bool INTERLEAVED, bool CONJ>
inline void rotate_row(const typename S::raw* x, typename S::raw* o, const typename S::acc* c,
                       const typename S::acc* s, int64_t r, int64_t d) {
  using R = typename S::raw;
  if (static_cast<const void*>(x) != static_cast<void*>(o)) {
    if (INTERLEAVED) rot_inter<S, CONJ>(x, o, c, s, r);
    else rot_half<S, CONJ>(x, x + r, o, o + r, c, s, r);
    for (int64_t j = 2 * r; j < d; ++j) o[j] = x[j];  // pass-through features (partial rotary)
    return;
  }
  // In place: copy a block of the inputs to the stack first so loads and stores never alias.
  R ta[2 * kBlock], tb[kBlock];
  for (int64_t j0 = 0; j0 < r; j0 += kBlock) {
    const int64_t n = std::min(kBlock, r - j0);
    if (INTERLEAVED) {
      std::memcpy(ta, x + 2 * j0, 2 * n * sizeof(R));
      rot_inter<S, CONJ>(ta, o + 2 * j0, c + j0, s + j0, n);
    } else {
      std::memcpy(ta, x + j0, n * sizeof(R));
      std::memcpy(tb, x + r + j0, n * sizeof(R));
      rot_half<S, CONJ>(ta, tb, o + j0, o + r + j0, c + j0, s + j0, n);
    }
  }
}

template <typename S, bool INTERLEAVED, bool CONJ>
void run(const Side* sides, int n_sides, const at::Tensor& cos, const at::Tensor& sin,
         const c10::optional<at::Tensor>& positions) {
  using R = typename S::raw; using A = typename S::acc;
  const int64_t r = cos.size(-1);
  const A* cp = reinterpret_cast<const A*>(cos.data_ptr());
  const A* sp = reinterpret_cast<const A*>(sin.data_ptr());
  const int64_t* pp = nullptr; int64_t pb = 0, pt = 0, L = 0, crow = 0;
  if (positions.has_value()) {
    pp = positions->data_ptr<int64_t>();
    pb = positions->size(0) == 1 ? 0 : positions->stride(0);
    pt = positions->stride(1);
    L = cos.size(0); crow = cos.stride(0);
  }
  int64_t rows[2] = {0, 0};
  for (int i = 0; i < n_sides; ++i) rows[i] = sides[i].B * sides[i].H * sides[i].T;
  const int64_t total = rows[0] + rows[1];
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, sides[0].D));
  at::parallel_for(0, total, grain, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      const int side_i = n < rows[0] ? 0 : 1;
      const Side& sd = sides[side_i];
      const int64_t m = side_i == 0 ? n : n - rows[0];
      const int64_t t = m % sd.T, bh = m / sd.T, h = bh % sd.H, b = bh / sd.H;
      const R* x = static_cast<const R*>(sd.x) + b * sd.xb + h * sd.xh + t * sd.xt;
      R* o = static_cast<R*>(sd.o) + b * sd.ob + h * sd.oh + t * sd.ot;
      int64_t off;
      if (pp != nullptr) {
        const int64_t p = pp[b * pb + t * pt];
        TORCH_CHECK(p >= 0 && p < L, "ropekit: position ", p, " is outside the cos/sin table of ", L,
                    " rows; build the table for positions up to max(positions)");
        off = p * crow;
      } else {
        off = b * sd.cb + h * sd.ch + t * sd.ct;
      }
      rotate_row<S, INTERLEAVED, CONJ>(x, o, cp + off, sp + off, r, sd.D);
    }
  });
}

Side make_side(const at::Tensor& x, at::Tensor& o, const at::Tensor& cos, bool with_positions) {
  TORCH_CHECK(x.dim() == 4 && o.dim() == 4, "ropekit: expected 4-D [B, H, T, D] views");
  TORCH_CHECK(x.stride(3) == 1 && o.stride(3) == 1, "ropekit: head_dim must have unit stride");
  Side s{x.data_ptr(), o.data_ptr(), x.size(0), x.size(1), x.size(2), x.size(3),
         x.stride(0), x.stride(1), x.stride(2), o.stride(0), o.stride(1), o.stride(2), 0, 0, 0};
  if (!with_positions) {
    TORCH_CHECK(cos.dim() == 4 && cos.stride(3) == 1, "ropekit: cos/sin must be [Bc, Hc, Tc, r] with unit stride");
    s.cb = cos.size(0) == 1 ? 0 : cos.stride(0);
    s.ch = cos.size(1) == 1 ? 0 : cos.stride(1);
    s.ct = cos.size(2) == 1 ? 0 : cos.stride(2);
  }
  return s;
}

template <typename S>
void run_dtype(const Side* sides, int n, const at::Tensor& cos, const at::Tensor& sin,
               const c10::optional<at::Tensor>& positions, bool interleaved, bool conj) {
  auto& p = positions;
  if (interleaved) {
    if (conj) run<S, true, true>(sides, n, cos, sin, p); else run<S, true, false>(sides, n, cos, sin, p);
  } else {
    if (conj) run<S, false, true>(sides, n, cos, sin, p); else run<S, false, false>(sides, n, cos, sin, p);
  }
}

}  // namespace

// Rotate q into q_out and k into k_out (pass q_out = q for in place). k may be undefined (q only).
void rotary_qk(const at::Tensor& q, const at::Tensor& k, at::Tensor q_out, at::Tensor k_out,
               const at::Tensor& cos, const at::Tensor& sin, const c10::optional<at::Tensor>& positions,
               bool interleaved, bool conj) {
  const bool with_pos = positions.has_value();
  TORCH_CHECK(cos.is_contiguous() || !with_pos, "ropekit: tables must be contiguous with positions");
  TORCH_CHECK(cos.strides() == sin.strides() && cos.sizes() == sin.sizes(), "ropekit: cos/sin views must match");
  Side sides[2];
  int n = 0;
  sides[n++] = make_side(q, q_out, cos, with_pos);
  if (k.defined()) sides[n++] = make_side(k, k_out, cos, with_pos);
  const auto dt = q.scalar_type();
  TORCH_CHECK(!k.defined() || k.scalar_type() == dt, "ropekit: q and k must share a dtype");
  if (dt == at::kFloat) run_dtype<F32>(sides, n, cos, sin, positions, interleaved, conj);
  else if (dt == at::kBFloat16) run_dtype<BF16>(sides, n, cos, sin, positions, interleaved, conj);
  else if (dt == at::kHalf) run_dtype<F16>(sides, n, cos, sin, positions, interleaved, conj);
  else if (dt == at::kDouble) run_dtype<F64>(sides, n, cos, sin, positions, interleaved, conj);
  else TORCH_CHECK(false, "ropekit: unsupported dtype ", dt);
}
"""
