// The fused CPU rotary kernel: a torch C++ extension compiled on first use by ropekit/kernels/cpu.py
// (torch.utils.cpp_extension.load; build flags and cache name are set there). Shipped as package data.
//
// Legend: `q: [B, Hq, T, D]`, `k: [B, Hk, T, D]` (any strides, unit stride on D), `r = rotary_dim / 2`;
// `cos, sin: [Bc, Hc, Tc, r]` (or fewer leading dims, right-aligned) with each leading size 1 (broadcast)
// or full, or, with `positions: [Bp, T]` int64,
// tables `[L, r]` whose row `positions[b, t]` is used for token t of batch b.
//
// One pass over the rows of q and then k (`at::parallel_for` over `B*Hq*T + B*Hk*T` rows), in the order the rows
// lie in memory: heads inner (one table row per run) for [B, T, H, D] storage; for [B, H, T, D] storage with one
// table row per token, groups of four heads walked token by token (head_group), else tokens inner. Each row is widened
// to the compute type in registers (float for fp32/bf16/fp16, double for fp64), rotated, narrowed once on store
// (bf16 rounds to nearest even like torch), so a row is read once and written once: the memory floor.
// `conj` rotates by minus the angle (the backward). In place when the output pointers equal the inputs.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <cstdint>
#include <cstring>
#include <cstdlib>
#include <vector>
#include <cmath>
#include <type_traits>
#include <algorithm>

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

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>
#define ROPEKIT_AVX512 1
// 16 lanes of float32 compute for float32 and bf16 storage. Full-width loads/stores in the main loop, masked
// ones only for a row's tail (masked stores are slow on Zen 4). No restrict: each step loads its lanes before
// storing the same lanes, so in-place rows are safe. bf16 narrowing rounds to nearest even like torch, with
// vcvtneps2bf16 where the CPU has AVX512-BF16 (one instruction; it also flushes bf16 denormals, |v| < 1.2e-38,
// to zero) and with integer arithmetic otherwise.
template <bool FULL> inline __m512 ld16(const float* p, __mmask16 m) {
  return FULL ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(m, p);
}
// NT: non-temporal (streaming) stores for full vectors, as two 32-byte halves (the caller guarantees 32-byte
// alignment, want_stream); row tails use regular masked stores.
template <bool FULL, bool NT = false> inline void st16(float* p, __m512 v, __mmask16 m) {
  if (FULL && NT) {
    _mm256_stream_ps(p, _mm512_castps512_ps256(v));
    _mm256_stream_ps(p + 8, _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  } else if (FULL) {
    _mm512_storeu_ps(p, v);
  } else {
    _mm512_mask_storeu_ps(p, m, v);
  }
}
template <bool FULL> inline __m512 ld16(const uint16_t* p, __mmask16 m) {
  const __m256i h = FULL ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)) : _mm256_maskz_loadu_epi16(m, p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
template <bool FULL, bool NT = false> inline void st16(uint16_t* p, __m512 v, __mmask16 m) {
#ifdef __AVX512BF16__
  const __m256i h = (__m256i)_mm512_cvtneps_pbh(v);
#else
  __m512i w = _mm512_castps_si512(v);
  __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(w, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(w, _mm512_set1_epi32(0x7FFF)), lsb), 16);
  r = _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), _mm512_set1_epi32(0x7FC0));
  const __m256i h = _mm512_cvtepi32_epi16(r);
#endif
  if (FULL && NT) _mm256_stream_si256(reinterpret_cast<__m256i*>(p), h);
  else if (FULL) _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), h);
  else _mm256_mask_storeu_epi16(p, m, h);
}
// fp16 storage: vcvtph2ps widens exactly; vcvtps2ph rounds to nearest even (overflow to inf), as torch's Half does.
template <bool FULL> inline __m512 ld16(const _Float16* p, __mmask16 m) {
  const __m256i h = FULL ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)) : _mm256_maskz_loadu_epi16(m, p);
  return _mm512_cvtph_ps(h);
}
template <bool FULL, bool NT = false> inline void st16(_Float16* p, __m512 v, __mmask16 m) {
  const __m256i h = _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  if (FULL && NT) _mm256_stream_si256(reinterpret_cast<__m256i*>(p), h);
  else if (FULL) _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), h);
  else _mm256_mask_storeu_epi16(p, m, h);
}
inline __mmask16 low_mask(int64_t n) { return (__mmask16)((1u << n) - 1u); }  // n < 16

// A step's table vectors (cos, and sin negated for CONJ), loaded once and used for every row of a token.
template <bool FULL, bool CONJ> struct HalfTable {
  __m512 c, s;
  inline void load(const float* cp, const float* sp, __mmask16 m) {
    c = ld16<FULL>(cp, m);
    s = ld16<FULL>(sp, m);
    if (CONJ) s = _mm512_sub_ps(_mm512_setzero_ps(), s);
  }
};
template <bool FULL, bool NT, typename R, typename Tab>
inline void half_step(const R* xa, const R* xb, R* oa, R* ob, const Tab& t, __mmask16 m) {
  const __m512 a = ld16<FULL>(xa, m), b = ld16<FULL>(xb, m);
  st16<FULL, NT>(oa, _mm512_sub_ps(_mm512_mul_ps(a, t.c), _mm512_mul_ps(b, t.s)), m);
  st16<FULL, NT>(ob, _mm512_add_ps(_mm512_mul_ps(b, t.c), _mm512_mul_ps(a, t.s)), m);
}

// Interleaved pairs in register: out = x * [c0 c0 c1 c1 ..] + swap_pairs(x) * [-s0 s0 -s1 s1 ..].
template <bool FULL, bool CONJ> struct InterTable {
  __m512 c, s;  // 8 pairs, each value twice; s with the pair signs
  inline void load(const float* cp, const float* sp, __mmask16 mp) {
    const __m512i dup = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
    const __m512 sign = CONJ ? _mm512_set_ps(-1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1)
                             : _mm512_set_ps(1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1);
    const __m256 c8 = FULL ? _mm256_loadu_ps(cp) : _mm256_maskz_loadu_ps(mp, cp);
    const __m256 s8 = FULL ? _mm256_loadu_ps(sp) : _mm256_maskz_loadu_ps(mp, sp);
    c = _mm512_permutexvar_ps(dup, _mm512_castps256_ps512(c8));
    s = _mm512_mul_ps(_mm512_permutexvar_ps(dup, _mm512_castps256_ps512(s8)), sign);
  }
};
template <bool FULL, bool NT, typename R, typename Tab>
inline void inter_step(const R* x, R* o, const Tab& t, __mmask16 m) {
  const __m512 v = ld16<FULL>(x, m);
  const __m512 swapped = _mm512_permute_ps(v, 0xB1);  // (x1, x0, x3, x2, ...)
  st16<FULL, NT>(o, _mm512_add_ps(_mm512_mul_ps(v, t.c), _mm512_mul_ps(swapped, t.s)), m);
}

// G rows of one token (the G heads: row g at x + g * xh) against one table row. With the pair count known at
// compile time (NR, a multiple of 16) the table vectors are loaded once for all G rows; each row is still written
// start to end before the next (interleaving the rows' half-line bf16 stores was slower: 1.6-1.9x against 0.9-1.1x
// the copy on the large shapes, where the stores stream).
template <typename R, bool CONJ, bool NT, int NR, int G>
inline void rot_half_v(const R* x, int64_t xh, R* o, int64_t oh, const float* c, const float* s, int64_t n_rt) {
  if constexpr (NR > 0 && NR % 16 == 0) {
    HalfTable<true, CONJ> tab[NR / 16];
    for (int k = 0; k < NR / 16; ++k) tab[k].load(c + 16 * k, s + 16 * k, 0xFFFF);
    for (int g = 0; g < G; ++g) {
      const R* xg = x + g * xh;
      R* og = o + g * oh;
      for (int k = 0; k < NR / 16; ++k) {
        half_step<true, NT>(xg + 16 * k, xg + NR + 16 * k, og + 16 * k, og + NR + 16 * k, tab[k], 0xFFFF);
      }
    }
  } else {
    const int64_t n = NR > 0 ? NR : n_rt;
    for (int g = 0; g < G; ++g) {
      const R* xg = x + g * xh;
      R* og = o + g * oh;
      int64_t j = 0;
      HalfTable<true, CONJ> t;
      for (; j + 16 <= n; j += 16) {
        t.load(c + j, s + j, 0xFFFF);
        half_step<true, NT>(xg + j, xg + n + j, og + j, og + n + j, t, 0xFFFF);
      }
      if (j < n) {
        HalfTable<false, CONJ> tt;
        tt.load(c + j, s + j, low_mask(n - j));
        half_step<false, NT>(xg + j, xg + n + j, og + j, og + n + j, tt, low_mask(n - j));
      }
    }
  }
}

template <typename R, bool CONJ, bool NT, int NR, int G>
inline void rot_inter_v(const R* x, int64_t xh, R* o, int64_t oh, const float* c, const float* s, int64_t n_rt) {
  if constexpr (NR > 0 && NR % 8 == 0) {
    InterTable<true, CONJ> tab[NR / 8];
    for (int k = 0; k < NR / 8; ++k) tab[k].load(c + 8 * k, s + 8 * k, 0xFF);
    for (int g = 0; g < G; ++g) {
      for (int k = 0; k < NR / 8; ++k) inter_step<true, NT>(x + g * xh + 16 * k, o + g * oh + 16 * k, tab[k], 0xFFFF);
    }
  } else {
    const int64_t n = NR > 0 ? NR : n_rt;
    for (int g = 0; g < G; ++g) {
      const R* xg = x + g * xh;
      R* og = o + g * oh;
      int64_t j = 0;  // pair index; 8 pairs = 16 features per step
      InterTable<true, CONJ> t;
      for (; j + 8 <= n; j += 8) {
        t.load(c + j, s + j, 0xFF);
        inter_step<true, NT>(xg + 2 * j, og + 2 * j, t, 0xFFFF);
      }
      if (j < n) {
        InterTable<false, CONJ> tt;
        tt.load(c + j, s + j, low_mask(n - j));
        inter_step<false, NT>(xg + 2 * j, og + 2 * j, tt, low_mask(2 * (n - j)));
      }
    }
  }
}
#endif

#if !defined(ROPEKIT_AVX512) && defined(__AVX2__)
#include <immintrin.h>
#define ROPEKIT_AVX2 1
// AVX2 without AVX-512 (Zen 2/3, Haswell..Alder Lake): 16 lanes per step as two 8-lane float32 vectors, so a
// bf16 step loads and stores one full 32-byte vector. Row tails (pair counts not a multiple of 16, or of 8
// interleaved) run the scalar loop (AVX2 masked stores are slow on AMD). As in the AVX-512 path, each step loads
// its lanes before storing the same lanes, so in-place rows are safe; NT selects non-temporal (streaming) stores
// for outputs too large to stay in cache, which needs 32-byte aligned output rows (checked by the caller).
struct V16 { __m256 lo, hi; };
inline V16 ld16(const float* p) { return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
inline __m256 bf16_widen(__m128i h) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)); }
inline V16 ld16(const uint16_t* p) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return {bf16_widen(_mm256_castsi256_si128(h)), bf16_widen(_mm256_extracti128_si256(h, 1))};
}
// float32 -> bf16 bits in the low half of each 32-bit lane: round to nearest even, NaN -> 0x7FC0 (as BF16::st).
inline __m256i bf16_round(__m256 v) {
  const __m256i w = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(w, 16), _mm256_set1_epi32(1));
  const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(w, _mm256_set1_epi32(0x7FFF)), lsb), 16);
  return _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7FC0), _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
}
template <bool NT> inline void st16(float* p, V16 v) {
  if (NT) { _mm256_stream_ps(p, v.lo); _mm256_stream_ps(p + 8, v.hi); }
  else { _mm256_storeu_ps(p, v.lo); _mm256_storeu_ps(p + 8, v.hi); }
}
template <bool NT> inline void st16(uint16_t* p, V16 v) {
  // packus works per 128-bit half: [lo0-3 hi0-3 | lo4-7 hi4-7]; the 64-bit permute (0, 2, 1, 3) restores order
  const __m256i h = _mm256_permute4x64_epi64(_mm256_packus_epi32(bf16_round(v.lo), bf16_round(v.hi)), 0xD8);
  if (NT) _mm256_stream_si256(reinterpret_cast<__m256i*>(p), h);
  else _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), h);
}
#ifdef __F16C__  // fp16 storage (every AVX2 CPU has F16C): exact widening, round-to-nearest-even narrowing
inline V16 ld16(const _Float16* p) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return {_mm256_cvtph_ps(_mm256_castsi256_si128(h)), _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1))};
}
template <bool NT> inline void st16(_Float16* p, V16 v) {
  constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  const __m256i h = _mm256_setr_m128i(_mm256_cvtps_ph(v.lo, kRound), _mm256_cvtps_ph(v.hi, kRound));
  if (NT) _mm256_stream_si256(reinterpret_cast<__m256i*>(p), h);
  else _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), h);
}
#endif
inline __m256 neg8(__m256 v) { return _mm256_xor_ps(v, _mm256_set1_ps(-0.0f)); }  // exact negation, like -s

// As in the AVX-512 rows: a step's table vectors, loaded once and used for every row of a token.
template <bool CONJ> struct HalfTable {
  V16 c, s;
  inline void load(const float* cp, const float* sp) {
    c = ld16(cp);
    s = ld16(sp);
    if (CONJ) s = {neg8(s.lo), neg8(s.hi)};
  }
};
template <bool NT, typename R, typename Tab>
inline void half_step(const R* xa, const R* xb, R* oa, R* ob, const Tab& t) {
  const V16 a = ld16(xa), b = ld16(xb);
  st16<NT>(oa, V16{_mm256_sub_ps(_mm256_mul_ps(a.lo, t.c.lo), _mm256_mul_ps(b.lo, t.s.lo)),
                   _mm256_sub_ps(_mm256_mul_ps(a.hi, t.c.hi), _mm256_mul_ps(b.hi, t.s.hi))});
  st16<NT>(ob, V16{_mm256_add_ps(_mm256_mul_ps(b.lo, t.c.lo), _mm256_mul_ps(a.lo, t.s.lo)),
                   _mm256_add_ps(_mm256_mul_ps(b.hi, t.c.hi), _mm256_mul_ps(a.hi, t.s.hi))});
}

// Interleaved pairs in register: out = x * [c0 c0 c1 c1 ..] + swap_pairs(x) * [-s0 s0 -s1 s1 ..].
template <bool CONJ> struct InterTable {
  V16 c, s;  // 8 pairs = 16 features, each value twice; s with the pair signs
  inline void load(const float* cp, const float* sp) {
    const __m256i dup_lo = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
    const __m256i dup_hi = _mm256_setr_epi32(4, 4, 5, 5, 6, 6, 7, 7);
    const __m256 sign = CONJ ? _mm256_setr_ps(0.0f, -0.0f, 0.0f, -0.0f, 0.0f, -0.0f, 0.0f, -0.0f)
                             : _mm256_setr_ps(-0.0f, 0.0f, -0.0f, 0.0f, -0.0f, 0.0f, -0.0f, 0.0f);  // xor: exact
    const __m256 c8 = _mm256_loadu_ps(cp), s8 = _mm256_loadu_ps(sp);
    c = {_mm256_permutevar8x32_ps(c8, dup_lo), _mm256_permutevar8x32_ps(c8, dup_hi)};
    s = {_mm256_xor_ps(_mm256_permutevar8x32_ps(s8, dup_lo), sign),
         _mm256_xor_ps(_mm256_permutevar8x32_ps(s8, dup_hi), sign)};
  }
};
template <bool NT, typename R, typename Tab>
inline void inter_step(const R* x, R* o, const Tab& t) {
  const V16 v = ld16(x);
  const __m256 wlo = _mm256_permute_ps(v.lo, 0xB1), whi = _mm256_permute_ps(v.hi, 0xB1);  // (x1, x0, x3, x2, ..)
  st16<NT>(o, V16{_mm256_add_ps(_mm256_mul_ps(v.lo, t.c.lo), _mm256_mul_ps(wlo, t.s.lo)),
                  _mm256_add_ps(_mm256_mul_ps(v.hi, t.c.hi), _mm256_mul_ps(whi, t.s.hi))});
}

template <typename R>
using StorageOf =
    std::conditional_t<std::is_same_v<R, float>, F32, std::conditional_t<std::is_same_v<R, _Float16>, F16, BF16>>;

// G rows of one token against one table row (row g at x + g * xh), each row written start to end; with NR known
// at compile time (a multiple of 16, or of 8 interleaved) the table vectors are loaded once for all G rows.
// Row tails (pair counts off the step) run the scalar loop (AVX2 masked stores are slow on AMD).
template <typename R, bool CONJ, bool NT, int NR, int G>
inline void rot_half_v(const R* x, int64_t xh, R* o, int64_t oh, const float* c, const float* s, int64_t n_rt) {
  using S = StorageOf<R>;
  if constexpr (NR > 0 && NR % 16 == 0) {
    HalfTable<CONJ> tab[NR / 16];
    for (int k = 0; k < NR / 16; ++k) tab[k].load(c + 16 * k, s + 16 * k);
    for (int g = 0; g < G; ++g) {
      const R* xg = x + g * xh;
      R* og = o + g * oh;
      for (int k = 0; k < NR / 16; ++k) {
        half_step<NT>(xg + 16 * k, xg + NR + 16 * k, og + 16 * k, og + NR + 16 * k, tab[k]);
      }
    }
    return;
  }
  const int64_t n = NR > 0 ? NR : n_rt;
  for (int g = 0; g < G; ++g) {
    const R* xa = x + g * xh; const R* xb = xa + n; R* oa = o + g * oh; R* ob = oa + n;
    int64_t j = 0;
    HalfTable<CONJ> t;
    for (; j + 16 <= n; j += 16) {
      t.load(c + j, s + j);
      half_step<NT>(xa + j, xb + j, oa + j, ob + j, t);
    }
    for (; j < n; ++j) {  // tail: each pair is loaded before it is stored, so in place is safe
      const float a = S::ld(xa[j]), b = S::ld(xb[j]), cj = c[j], sj = CONJ ? -s[j] : s[j];
      oa[j] = S::st(a * cj - b * sj);
      ob[j] = S::st(b * cj + a * sj);
    }
  }
}

template <typename R, bool CONJ, bool NT, int NR, int G>
inline void rot_inter_v(const R* x, int64_t xh, R* o, int64_t oh, const float* c, const float* s, int64_t n_rt) {
  using S = StorageOf<R>;
  if constexpr (NR > 0 && NR % 8 == 0) {
    InterTable<CONJ> tab[NR / 8];
    for (int k = 0; k < NR / 8; ++k) tab[k].load(c + 8 * k, s + 8 * k);
    for (int g = 0; g < G; ++g) {
      for (int k = 0; k < NR / 8; ++k) inter_step<NT>(x + g * xh + 16 * k, o + g * oh + 16 * k, tab[k]);
    }
    return;
  }
  const int64_t n = NR > 0 ? NR : n_rt;
  for (int g = 0; g < G; ++g) {
    const R* xg = x + g * xh; R* og = o + g * oh;
    int64_t j = 0;  // pair index; 8 pairs = 16 features per step
    InterTable<CONJ> t;
    for (; j + 8 <= n; j += 8) {
      t.load(c + j, s + j);
      inter_step<NT>(xg + 2 * j, og + 2 * j, t);
    }
    for (; j < n; ++j) {
      const float a = S::ld(xg[2 * j]), b = S::ld(xg[2 * j + 1]), cj = c[j], sj = CONJ ? -s[j] : s[j];
      og[2 * j] = S::st(a * cj - b * sj);
      og[2 * j + 1] = S::st(b * cj + a * sj);
    }
  }
}
#endif
#if defined(ROPEKIT_AVX512) || defined(ROPEKIT_AVX2)
#define ROPEKIT_SIMD 1
#endif
#if defined(ROPEKIT_AVX512) || (defined(ROPEKIT_AVX2) && defined(__F16C__))
constexpr bool kHalfRows = true;  // fp16 storage runs the vector rows too
#else
constexpr bool kHalfRows = false;
#endif
// The storage types with vector rows (float32 compute): float32, bf16 and, with F16C, fp16.
template <typename S>
constexpr bool kVectorRows =
    std::is_same_v<S, F32> || std::is_same_v<S, BF16> || (kHalfRows && std::is_same_v<S, F16>);
#ifdef ROPEKIT_SIMD
#define ROPEKIT_STREAM 1
constexpr bool kCanStream = true;  // the AVX2 and AVX-512 rows implement non-temporal stores (NT)
#else
constexpr bool kCanStream = false;
#endif

struct Side {  // one of q / k, viewed as [B, H, T, D]
  const void* x; void* o; int64_t B, H, T, D;
  int64_t xb, xh, xt, ob, oh, ot;   // element strides
  int64_t cb, ch, ct;               // cos/sin strides (0 where broadcast); unused with positions
  bool heads_inner;                 // heads closer in memory than tokens ([B, T, H, D] storage): walk heads inner
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

// One row (the scalar loops: fp16, fp64 and builds without SIMD rows).
template <typename S, bool INTERLEAVED, bool CONJ>
inline void rotate_row_scalar(const typename S::raw* x, typename S::raw* o, const typename S::acc* c,
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

// Heads walked together, token by token, over [B, H, T, D] storage: ROPEKIT_CPU_HEAD_GROUP (read once per
// process; default 4; 1: each head's tokens as one run, the walk before 2026-12-04). Four measured best on an
// AVX-512 Zen 4 (2 to 8 tried; eight opens 16 streams and falls back to the one-head speed).
inline int64_t head_group() {
  static const int64_t g = [] {
    const char* e = std::getenv("ROPEKIT_CPU_HEAD_GROUP");
    return e == nullptr ? int64_t(4) : std::max<int64_t>(1, std::atoll(e));
  }();
  return g;
}
constexpr int64_t kGroupTokens = 1024;  // tokens per unit of work of the grouped walk

// G rows sharing one table row (row g at x + g * xh, output at o + g * oh): the G heads of one token.
template <typename S, bool INTERLEAVED, bool CONJ, int NR, bool NT, int G = 1>
inline void rotate_rows(const typename S::raw* x, int64_t xh, typename S::raw* o, int64_t oh,
                        const typename S::acc* c, const typename S::acc* s, int64_t r, int64_t d) {
  using R = typename S::raw;
#ifdef ROPEKIT_SIMD
  if constexpr (kVectorRows<S>) {
    if (INTERLEAVED) rot_inter_v<R, CONJ, NT, NR, G>(x, xh, o, oh, c, s, r);
    else rot_half_v<R, CONJ, NT, NR, G>(x, xh, o, oh, c, s, r);
    if (static_cast<const void*>(x) != static_cast<void*>(o) && d > 2 * r) {
      for (int g = 0; g < G; ++g) {  // pass-through features (partial rotary)
        std::memcpy(o + g * oh + 2 * r, x + g * xh + 2 * r, (d - 2 * r) * sizeof(R));
      }
    }
    return;
  }
#endif
  for (int g = 0; g < G; ++g) rotate_row_scalar<S, INTERLEAVED, CONJ>(x + g * xh, o + g * oh, c, s, r, d);
}

template <typename S, bool INTERLEAVED, bool CONJ, int NR, bool NT>
inline void rotate_row(const typename S::raw* x, typename S::raw* o, const typename S::acc* c,
                       const typename S::acc* s, int64_t r, int64_t d) {
  rotate_rows<S, INTERLEAVED, CONJ, NR, NT, 1>(x, 0, o, 0, c, s, r, d);
}

// n rows sharing one table row (the heads of one token): four at a time, then one by one.
template <typename S, bool INTERLEAVED, bool CONJ, int NR, bool NT>
inline void rotate_group(const typename S::raw* x, int64_t xh, typename S::raw* o, int64_t oh, int64_t n,
                         const typename S::acc* c, const typename S::acc* s, int64_t r, int64_t d) {
  int64_t g = 0;
  for (; g + 4 <= n; g += 4) rotate_rows<S, INTERLEAVED, CONJ, NR, NT, 4>(x + g * xh, xh, o + g * oh, oh, c, s, r, d);
  for (; g < n; ++g) rotate_rows<S, INTERLEAVED, CONJ, NR, NT, 1>(x + g * xh, xh, o + g * oh, oh, c, s, r, d);
}

// The bytes between one token's rows and the next token's in a token-major walk (a packed projection's v heads,
// or k's and v's for a q-only call): read ahead with non-temporal prefetches, never written. A walk that skips a
// third of every token's bytes was slower than one over all of them (torch's own add_ on such a view measured
// 6.4 ms against 3.9 ms for the whole buffer); prefetching the gaps took ropekit's packed [B, T, 3H, D] in place
// from 1.5-1.8x to 0.8-0.9x the copy (docs/kernels.md, "Packed QKV"). Sides must share the token stride.
template <typename R>
inline void prefetch_token_gaps(const Side* sides, int n_sides, int64_t b, int64_t t) {
  constexpr int64_t kMaxGap = 64 * 1024, kLine = 64;
  const char* lo[2]; const char* hi[2];
  for (int i = 0; i < n_sides; ++i) {
    const Side& sd = sides[i];
    lo[i] = static_cast<const char*>(sd.x) + (b * sd.xb + t * sd.xt) * int64_t(sizeof(R));
    hi[i] = lo[i] + ((sd.H - 1) * sd.xh + sd.D) * int64_t(sizeof(R));
  }
  if (n_sides == 2 && lo[1] < lo[0]) { std::swap(lo[0], lo[1]); std::swap(hi[0], hi[1]); }
  auto fill = [](const char* from, const char* to) {
    if (to > from && to - from <= kMaxGap) {
#ifdef ROPEKIT_SIMD  // x86; volatile asm: GCC deletes a loop of _mm_prefetch calls once inlined (no side effects)
      for (; from < to; from += kLine) asm volatile("prefetchnta %0" : : "m"(*from));
#endif
    }
  };
  if (n_sides == 2) fill(hi[0], lo[1]);
  fill(hi[n_sides - 1], lo[0] + sides[0].xt * int64_t(sizeof(R)));  // up to the next token's first row
}

template <typename S, bool INTERLEAVED, bool CONJ, int NR, bool NT>
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
  bool grouped[2] = {false, false};  // groups pay only where one table row serves the rows of several heads
  for (int i = 0; i < n_sides; ++i) {
    const Side& sd = sides[i];
    grouped[i] = head_group() > 1 && !sd.heads_inner && sd.H > 1 && (pp != nullptr || (sd.ch == 0 && sd.ct != 0));
  }
  if (n_sides == 2 && grouped[0] != grouped[1]) {  // e.g. MQA's one key head: each side its own walk
    run<S, INTERLEAVED, CONJ, NR, NT>(sides, 1, cos, sin, positions);
    run<S, INTERLEAVED, CONJ, NR, NT>(sides + 1, 1, cos, sin, positions);
    return;
  }
  if (grouped[0]) {
    const int64_t group = head_group();
    // [B, H, T, D] storage: `group` heads at a time, token by token, so each table row is read once for the group
    // (from L1) instead of once per head (docs/kernels.md, "What bounds bf16"); units of kGroupTokens tokens.
    int64_t units[2] = {0, 0}, n_grp[2] = {0, 0}, n_chunk[2] = {0, 0};
    for (int i = 0; i < n_sides; ++i) {
      n_grp[i] = (sides[i].H + group - 1) / group;
      n_chunk[i] = (sides[i].T + kGroupTokens - 1) / kGroupTokens;
      units[i] = sides[i].B * n_grp[i] * n_chunk[i];
    }
    at::parallel_for(0, units[0] + units[1], 1, [&](int64_t begin, int64_t end) {
      for (int64_t u = begin; u < end; ++u) {
        const int side_i = u < units[0] ? 0 : 1;
        const Side& sd = sides[side_i];
        const int64_t v = side_i == 0 ? u : u - units[0], chunk = v % n_chunk[side_i];
        const int64_t h0 = (v / n_chunk[side_i]) % n_grp[side_i] * group, b = v / (n_chunk[side_i] * n_grp[side_i]);
        const int64_t t0 = chunk * kGroupTokens, t1 = std::min(sd.T, t0 + kGroupTokens);
        const int64_t g_n = std::min(group, sd.H - h0);
        const R* x0 = static_cast<const R*>(sd.x) + b * sd.xb + h0 * sd.xh;
        R* o0 = static_cast<R*>(sd.o) + b * sd.ob + h0 * sd.oh;
        for (int64_t t = t0; t < t1; ++t) {
          const A* c; const A* sn;
          if (pp != nullptr) {
            const int64_t p = pp[b * pb + t * pt];
            TORCH_CHECK(p >= 0 && p < L, "ropekit: position ", p, " is outside the cos/sin table of ", L,
                        " rows; build the table for positions up to max(positions)");
            c = cp + p * crow; sn = sp + p * crow;
          } else {
            c = cp + b * sd.cb + t * sd.ct; sn = sp + b * sd.cb + t * sd.ct;
          }
          rotate_group<S, INTERLEAVED, CONJ, NR, NT>(x0 + t * sd.xt, sd.xh, o0 + t * sd.ot, sd.oh, g_n, c, sn, r, sd.D);
        }
      }
#ifdef ROPEKIT_STREAM
      if (NT) _mm_sfence();
#endif
    });
    return;
  }
  bool token_major = true;
  for (int i = 0; i < n_sides; ++i) {
    token_major = token_major && sides[i].heads_inner && sides[i].B == sides[0].B && sides[i].T == sides[0].T;
  }
  if (token_major) {
    // [B, T, H, D] storage on every side: token by token, q's heads then k's, the bytes between them prefetched.
    // For q and k packed in one buffer (views of a fused projection) that reads the buffer as one stream; walking
    // all of q and then all of k read every other block of each token and took 1.8-2.0x the copy in place
    // (docs/kernels.md, "Packed QKV").
    const int64_t B = sides[0].B, T = sides[0].T;
    int64_t width = 0;
    for (int i = 0; i < n_sides; ++i) width += sides[i].H * sides[i].D;
    const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, width));
    const bool gaps = n_sides == 1 || sides[0].xt == sides[1].xt;
    at::parallel_for(0, B * T, grain, [&](int64_t begin, int64_t end) {
      for (int64_t m = begin; m < end; ++m) {
        const int64_t b = m / T, t = m % T;
        const A* c_pos = nullptr; const A* s_pos = nullptr;
        if (pp != nullptr) {
          const int64_t p = pp[b * pb + t * pt];
          TORCH_CHECK(p >= 0 && p < L, "ropekit: position ", p, " is outside the cos/sin table of ", L,
                      " rows; build the table for positions up to max(positions)");
          c_pos = cp + p * crow; s_pos = sp + p * crow;
        }
        for (int side_i = 0; side_i < n_sides; ++side_i) {
          const Side& sd = sides[side_i];
          const R* x = static_cast<const R*>(sd.x) + b * sd.xb + t * sd.xt;
          R* o = static_cast<R*>(sd.o) + b * sd.ob + t * sd.ot;
          if (pp != nullptr) {
            rotate_group<S, INTERLEAVED, CONJ, NR, NT>(x, sd.xh, o, sd.oh, sd.H, c_pos, s_pos, r, sd.D);
            continue;
          }
          const A* c = cp + b * sd.cb + t * sd.ct;
          const A* sn = sp + b * sd.cb + t * sd.ct;
          if (sd.ch == 0) {  // one table row serves the token's heads
            rotate_group<S, INTERLEAVED, CONJ, NR, NT>(x, sd.xh, o, sd.oh, sd.H, c, sn, r, sd.D);
            continue;
          }
          for (int64_t h = 0; h < sd.H; ++h, x += sd.xh, o += sd.oh, c += sd.ch, sn += sd.ch) {  // per-head tables
            rotate_row<S, INTERLEAVED, CONJ, NR, NT>(x, o, c, sn, r, sd.D);
          }
        }
        if (gaps && m + 1 < end) prefetch_token_gaps<R>(sides, n_sides, b, t);  // after the rows: measured
      }
#ifdef ROPEKIT_STREAM
      if (NT) _mm_sfence();
#endif
    });
    return;
  }
  int64_t rows[2] = {0, 0};
  for (int i = 0; i < n_sides; ++i) rows[i] = sides[i].B * sides[i].H * sides[i].T;
  const int64_t total = rows[0] + rows[1];
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, sides[0].D));
  at::parallel_for(0, total, grain, [&](int64_t begin, int64_t end) {
    for (int side_i = 0; side_i < n_sides; ++side_i) {  // this chunk's rows of q, then of k
      const int64_t lo = side_i == 0 ? 0 : rows[0], hi = lo + rows[side_i];
      const int64_t first = std::max(begin, lo), last = std::min(end, hi);
      if (first >= last) continue;
      const Side& sd = sides[side_i];
      int64_t m = first - lo;
      if (sd.heads_inner) {  // rows in (batch, token, head) order, the memory order of [B, T, H, D] storage
        int64_t h = m % sd.H, t = (m / sd.H) % sd.T, b = m / (sd.T * sd.H);
        while (m < last - lo) {  // one run of consecutive heads of one (batch, token): one table row
          const int64_t len = std::min(sd.H - h, last - lo - m);
          const R* x = static_cast<const R*>(sd.x) + b * sd.xb + h * sd.xh + t * sd.xt;
          R* o = static_cast<R*>(sd.o) + b * sd.ob + h * sd.oh + t * sd.ot;
          const A* c; const A* sn; int64_t step = 0;
          if (pp != nullptr) {
            const int64_t p = pp[b * pb + t * pt];
            TORCH_CHECK(p >= 0 && p < L, "ropekit: position ", p, " is outside the cos/sin table of ", L,
                        " rows; build the table for positions up to max(positions)");
            c = cp + p * crow; sn = sp + p * crow;
          } else {
            const int64_t off = b * sd.cb + h * sd.ch + t * sd.ct;
            c = cp + off; sn = sp + off; step = sd.ch;
          }
          for (int64_t i = 0; i < len; ++i, x += sd.xh, o += sd.oh, c += step, sn += step) {
            rotate_row<S, INTERLEAVED, CONJ, NR, NT>(x, o, c, sn, r, sd.D);
          }
          m += len; h += len;
          if (h == sd.H) { h = 0; if (++t == sd.T) { t = 0; ++b; } }
        }
        continue;
      }
      int64_t t = m % sd.T, h = (m / sd.T) % sd.H, b = m / (sd.T * sd.H);  // divide once, then count
      while (m < last - lo) {  // one run of consecutive tokens of one (batch, head): pointers just advance
        const int64_t len = std::min(sd.T - t, last - lo - m);
        const R* x = static_cast<const R*>(sd.x) + b * sd.xb + h * sd.xh + t * sd.xt;
        R* o = static_cast<R*>(sd.o) + b * sd.ob + h * sd.oh + t * sd.ot;
        if (pp != nullptr) {
          const int64_t* prow = pp + b * pb + t * pt;
          for (int64_t i = 0; i < len; ++i, x += sd.xt, o += sd.ot) {
            const int64_t p = prow[i * pt];
            TORCH_CHECK(p >= 0 && p < L, "ropekit: position ", p, " is outside the cos/sin table of ", L,
                        " rows; build the table for positions up to max(positions)");
            rotate_row<S, INTERLEAVED, CONJ, NR, NT>(x, o, cp + p * crow, sp + p * crow, r, sd.D);
          }
        } else {
          const int64_t off = b * sd.cb + h * sd.ch + t * sd.ct;
          const A* c = cp + off;
          const A* sn = sp + off;
          for (int64_t i = 0; i < len; ++i, x += sd.xt, o += sd.ot, c += sd.ct, sn += sd.ct) {
            rotate_row<S, INTERLEAVED, CONJ, NR, NT>(x, o, c, sn, r, sd.D);
          }
        }
        m += len; t += len;
        if (t == sd.T) { t = 0; if (++h == sd.H) { h = 0; ++b; } }
      }
    }
#ifdef ROPEKIT_STREAM
    if (NT) _mm_sfence();  // streaming stores are weakly ordered: drain them before the chunk counts as done
#endif
  });
}

Side make_side(const at::Tensor& x, at::Tensor& o, const at::Tensor& cos, bool with_positions) {
  TORCH_CHECK(x.dim() == 4 && o.dim() == 4, "ropekit: expected 4-D [B, H, T, D] views");
  TORCH_CHECK(x.stride(3) == 1 && o.stride(3) == 1, "ropekit: head_dim must have unit stride");
  Side s{x.data_ptr(), o.data_ptr(), x.size(0), x.size(1), x.size(2), x.size(3),
         x.stride(0), x.stride(1), x.stride(2), o.stride(0), o.stride(1), o.stride(2), 0, 0, 0,
         x.size(1) > 1 && x.size(2) > 1 && x.stride(1) < x.stride(2)};
  if (!with_positions) {  // cos: [r], [Tc, r], [Hc, Tc, r] or [Bc, Hc, Tc, r], right-aligned with [B, H, T, D]
    const int64_t nd = cos.dim();
    TORCH_CHECK(nd >= 1 && nd <= 4 && cos.stride(nd - 1) == 1, "ropekit: cos/sin must be [..., Tc, r], unit stride");
    auto bstride = [&](int64_t from_end) -> int64_t {  // stride of dim nd-1-from_end, 0 if absent or size 1
      const int64_t i = nd - 1 - from_end;
      return (i < 0 || cos.size(i) == 1) ? 0 : cos.stride(i);
    };
    s.ct = bstride(1); s.ch = bstride(2); s.cb = bstride(3);
  }
  return s;
}

template <typename S, int NR, bool NT>
void run_flags(const Side* sides, int n, const at::Tensor& cos, const at::Tensor& sin,
               const c10::optional<at::Tensor>& p, bool interleaved, bool conj) {
  if (interleaved && conj) run<S, true, true, NR, NT>(sides, n, cos, sin, p);
  else if (interleaved) run<S, true, false, NR, NT>(sides, n, cos, sin, p);
  else if (conj) run<S, false, true, NR, NT>(sides, n, cos, sin, p);
  else run<S, false, false, NR, NT>(sides, n, cos, sin, p);
}

template <typename S, int NR>
void run_stream(const Side* sides, int n, const at::Tensor& cos, const at::Tensor& sin,
                const c10::optional<at::Tensor>& p, bool interleaved, bool conj, bool stream) {
  if constexpr (kCanStream && kVectorRows<S>) {
    if (stream) return run_flags<S, NR, true>(sides, n, cos, sin, p, interleaved, conj);
  }
  run_flags<S, NR, false>(sides, n, cos, sin, p, interleaved, conj);
}

template <typename S>
void run_dtype(const Side* sides, int n, const at::Tensor& cos, const at::Tensor& sin,
               const c10::optional<at::Tensor>& p, bool interleaved, bool conj, bool stream) {
#ifdef ROPEKIT_SIMD
  if constexpr (kVectorRows<S>) {  // head_dim 64 and 128: unrolled rows
    const int64_t r = cos.size(-1);
    if (r == 32) return run_stream<S, 32>(sides, n, cos, sin, p, interleaved, conj, stream);
    if (r == 64) return run_stream<S, 64>(sides, n, cos, sin, p, interleaved, conj, stream);
  }
#endif
  run_stream<S, 0>(sides, n, cos, sin, p, interleaved, conj, stream);
}

// Streaming stores pay when the outputs are out of place, at least stream_min_bytes in all (a negative value
// turns them off) and every vector store lands on a 32-byte boundary.
bool want_stream(const Side* sides, int n, int64_t r, bool interleaved, int64_t elem, int64_t stream_min_bytes) {
  if (!kCanStream || stream_min_bytes < 0) return false;
  int64_t bytes = 0;
  for (int i = 0; i < n; ++i) {
    const Side& s = sides[i];
    if (s.B * s.H * s.T == 0) continue;  // no rows (the q-only call's empty k)
    if (s.x == s.o) return false;
    const bool aligned = reinterpret_cast<uintptr_t>(s.o) % 32 == 0 && (s.ob * elem) % 32 == 0 &&
                         (s.oh * elem) % 32 == 0 && (s.ot * elem) % 32 == 0 && (interleaved || (r * elem) % 32 == 0);
    if (!aligned) return false;
    bytes += s.B * s.H * s.T * s.D * elem;
  }
  return bytes >= stream_min_bytes;
}

}  // namespace

// Rotate q into q_out and k into k_out (pass q_out = q for in place). k may be undefined (q only).
// Returns whether the outputs were written with streaming stores (see want_stream), so tests can tell.
bool rotary_qk(const at::Tensor& q, const at::Tensor& k, at::Tensor q_out, at::Tensor k_out,
               const at::Tensor& cos, const at::Tensor& sin, const c10::optional<at::Tensor>& positions,
               bool interleaved, bool conj, int64_t stream_min_bytes) {
  const bool with_pos = positions.has_value();
  // With positions the tables are [L, r] rows of any row stride (a vLLM cos_sin_cache is read as two column
  // halves of one [L, 2r] tensor), unit stride within a row.
  TORCH_CHECK(!with_pos || (cos.dim() == 2 && cos.stride(1) == 1), "ropekit: tables must be [L, r], unit stride");
  TORCH_CHECK(cos.strides() == sin.strides() && cos.sizes() == sin.sizes(), "ropekit: cos/sin views must match");
  Side sides[2];
  int n = 0;
  sides[n++] = make_side(q, q_out, cos, with_pos);
  if (k.defined() && k.numel()) sides[n++] = make_side(k, k_out, cos, with_pos);  // q-only calls: no k side
  const auto dt = q.scalar_type();
  TORCH_CHECK(!k.defined() || k.scalar_type() == dt, "ropekit: q and k must share a dtype");
  const int64_t r = cos.size(-1), elem = q.element_size();
  const bool stream = want_stream(sides, n, r, interleaved, elem, stream_min_bytes);
  if (dt == at::kFloat) run_dtype<F32>(sides, n, cos, sin, positions, interleaved, conj, stream);
  else if (dt == at::kBFloat16) run_dtype<BF16>(sides, n, cos, sin, positions, interleaved, conj, stream);
  else if (dt == at::kHalf) run_dtype<F16>(sides, n, cos, sin, positions, interleaved, conj, stream);
  else if (dt == at::kDouble) run_dtype<F64>(sides, n, cos, sin, positions, interleaved, conj, false);
  else TORCH_CHECK(false, "ropekit: unsupported dtype ", dt);
  return stream;
}


// ---- rope_angles' float32 angles in one pass (functional.rope_cos_sin's fast path) -------------------------------
// The float32 angle is the one ropekit.functional.rope_angles forms, by the same float64 operations (no FMA: the
// same rounding as torch, so the angles are bit-identical): p * f (exact for float32 f) reduced once,
// x - rint(x / 2 pi) * 2 pi (position_angles), when every |p| < 2**29; otherwise (split_all)
// exact_position_angles' digit split p = d2 * 2**42 + d1 * 2**21 + d0 (d2 signed) with c_i = (2**(21 i) f) mod 2 pi
// (ropekit.angles.exact_angle_constants), each d_i * c_i reduced, summed, reduced again (zero digits contribute
// exact zeros and are skipped; one term within [-pi, pi] is unchanged by the last reduction). cst: [4, r] float64
// rows c_0, c_1, c_2, f. One loop replaces torch's float64 passes (convert, multiply, scale, round, subtract,
// narrow); the caller then takes torch's float32 cos/sin of the result.
namespace {
constexpr double kTwoPi = 6.283185307179586, kInvTwoPi = 1.0 / 6.283185307179586;
constexpr int64_t kDirectLimit = int64_t(1) << 29;  // ropekit.angles.EXACT_POSITION_LIMIT

inline double wrap_scalar(double a) { return a - std::nearbyint(a * kInvTwoPi) * kTwoPi; }

// The reduced float64 angle of pair j; mode 0: p * f (|p| < 2**29), 1..3: that many digits (d0 [, d1 [, d2]]).
inline double angle_scalar(const double* cst, int64_t r, int64_t j, double pf, double d0, double d1, double d2,
                           int mode) {
  if (mode == 0) return wrap_scalar(pf * cst[3 * r + j]);
  double t = wrap_scalar(d0 * cst[j]);
  if (mode == 1) return t;
  t = t + wrap_scalar(d1 * cst[r + j]);
  if (mode == 3) t = t + wrap_scalar(d2 * cst[2 * r + j]);
  return wrap_scalar(t);
}

#ifdef __AVX2__
inline __m256d wrap4(__m256d a) {
  const __m256d turns = _mm256_round_pd(_mm256_mul_pd(a, _mm256_set1_pd(kInvTwoPi)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  return _mm256_sub_pd(a, _mm256_mul_pd(turns, _mm256_set1_pd(kTwoPi)));
}
inline __m256d angle4(const double* cst, int64_t r, int64_t j, double pf, double d0, double d1, double d2,
                      int mode) {
  if (mode == 0) return wrap4(_mm256_mul_pd(_mm256_set1_pd(pf), _mm256_loadu_pd(cst + 3 * r + j)));
  __m256d t = wrap4(_mm256_mul_pd(_mm256_set1_pd(d0), _mm256_loadu_pd(cst + j)));
  if (mode == 1) return t;
  t = _mm256_add_pd(t, wrap4(_mm256_mul_pd(_mm256_set1_pd(d1), _mm256_loadu_pd(cst + r + j))));
  if (mode == 3) t = _mm256_add_pd(t, wrap4(_mm256_mul_pd(_mm256_set1_pd(d2), _mm256_loadu_pd(cst + 2 * r + j))));
  return wrap4(t);
}
#endif
#ifdef ROPEKIT_AVX512  // 8 lanes: the same float64 operations as angle4, in the same order
inline __m512d wrap8(__m512d a) {
  const __m512d turns = _mm512_roundscale_pd(_mm512_mul_pd(a, _mm512_set1_pd(kInvTwoPi)),
                                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  return _mm512_sub_pd(a, _mm512_mul_pd(turns, _mm512_set1_pd(kTwoPi)));
}
inline __m512d angle8(const double* cst, int64_t r, int64_t j, double pf, double d0, double d1, double d2,
                      int mode) {
  if (mode == 0) return wrap8(_mm512_mul_pd(_mm512_set1_pd(pf), _mm512_loadu_pd(cst + 3 * r + j)));
  __m512d t = wrap8(_mm512_mul_pd(_mm512_set1_pd(d0), _mm512_loadu_pd(cst + j)));
  if (mode == 1) return t;
  t = _mm512_add_pd(t, wrap8(_mm512_mul_pd(_mm512_set1_pd(d1), _mm512_loadu_pd(cst + r + j))));
  if (mode == 3) t = _mm512_add_pd(t, wrap8(_mm512_mul_pd(_mm512_set1_pd(d2), _mm512_loadu_pd(cst + 2 * r + j))));
  return wrap8(t);
}
#endif

// rope_angles' float32 angles of position p for the r pairs into a_out (unit stride); cst: [4, r] float64.
inline void angles_row(int64_t p, const double* cst, int64_t r, float* a_out, bool split_all) {
  constexpr int64_t mask = (int64_t(1) << 21) - 1;
  const int64_t d0 = p & mask, d1 = (p >> 21) & mask, d2 = p >> 42;  // arithmetic shift: d2 signed
  const bool direct = !split_all && p < kDirectLimit && p > -kDirectLimit;
  const int mode = direct ? 0 : (d2 != 0 ? 3 : (d1 != 0 ? 2 : 1));
  const double pf = (double)p, f0 = (double)d0, f1 = (double)d1, f2 = (double)d2;
  int64_t j = 0;
#ifdef ROPEKIT_AVX512
  for (; j + 8 <= r; j += 8) _mm256_storeu_ps(a_out + j, _mm512_cvtpd_ps(angle8(cst, r, j, pf, f0, f1, f2, mode)));
#endif
#ifdef __AVX2__
  for (; j + 4 <= r; j += 4) _mm_storeu_ps(a_out + j, _mm256_cvtpd_ps(angle4(cst, r, j, pf, f0, f1, f2, mode)));
#endif
  for (; j < r; ++j) a_out[j] = (float)angle_scalar(cst, r, j, pf, f0, f1, f2, mode);
}

// ---- Table-free rotation: cos/sin per token from the exact angle, no table --------------------------------------
// Each token's angles come from angle_scalar/angle4 (the digit split beyond 2**29, the float64 product below it:
// exact_position_angles' reduction, within one float32 rounding plus 1e-8 rad), narrowed to float32 (rope_angles'
// number); then sine and cosine are evaluated in float64: quadrant n = rint(a * 2 / pi), y = a - n pi/2 in
// [-pi/4, pi/4], and Cephes' minimax polynomials for sinf/cosf on that interval (S. L. Moshier, "Methods and
// Programs for Mathematical Functions", 1989; the coefficients of sinf.c/cosf.c) evaluated in float64
// (approximation error below 1e-9), rounded once to float32: within half an ulp plus 1e-9 of cos/sin of the float32
// angle (torch's float32 cos is within one ulp of it, so the two may differ by an ulp).
constexpr double kPiO2 = 1.5707963267948966, kTwoOPi = 0.6366197723675814;
constexpr double kS1 = -1.6666654611e-1, kS2 = 8.3321608736e-3, kS3 = -1.9515295891e-4;
constexpr double kC1 = 4.166664568298827e-2, kC2 = -1.388731625493765e-3, kC3 = 2.443315711809948e-5;
constexpr int64_t kMaxPairs = 1024;  // the per-token stack buffer (tablefree._MAX_CPP_PAIRS)

inline void sincos_scalar(double w, float* c, float* s) {
  const double a = (double)(float)w;  // rope_angles' float32 angle
  const double n = std::nearbyint(a * kTwoOPi);
  const double y = a - n * kPiO2, z = y * y;
  const double sy = y + y * z * (kS1 + z * (kS2 + z * kS3));
  const double cy = 1.0 - 0.5 * z + z * z * (kC1 + z * (kC2 + z * kC3));
  const int q = ((int)n) & 3;
  const double sv = (q & 1) ? cy : sy, cv = (q & 1) ? sy : cy;
  *s = (float)((q & 2) ? -sv : sv);
  *c = (float)(((q + 1) & 2) ? -cv : cv);
}

#ifdef __AVX2__
inline __m256d sel4(__m256d a, __m256d b, __m256d m) { return _mm256_blendv_pd(a, b, m); }
// 4 reduced float64 angles -> their float32 cos and sin (the same operations as sincos_scalar).
inline void sincos4(__m256d w, __m128* c, __m128* s) {
  const __m256d a = _mm256_cvtps_pd(_mm256_cvtpd_ps(w));
  const __m256d n = _mm256_round_pd(_mm256_mul_pd(a, _mm256_set1_pd(kTwoOPi)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256d y = _mm256_sub_pd(a, _mm256_mul_pd(n, _mm256_set1_pd(kPiO2))), z = _mm256_mul_pd(y, y);
  __m256d ps = _mm256_add_pd(_mm256_set1_pd(kS2), _mm256_mul_pd(z, _mm256_set1_pd(kS3)));
  ps = _mm256_add_pd(_mm256_set1_pd(kS1), _mm256_mul_pd(z, ps));
  const __m256d sy = _mm256_add_pd(y, _mm256_mul_pd(_mm256_mul_pd(y, z), ps));
  __m256d pc = _mm256_add_pd(_mm256_set1_pd(kC2), _mm256_mul_pd(z, _mm256_set1_pd(kC3)));
  pc = _mm256_add_pd(_mm256_set1_pd(kC1), _mm256_mul_pd(z, pc));
  const __m256d cy = _mm256_add_pd(_mm256_sub_pd(_mm256_set1_pd(1.0), _mm256_mul_pd(_mm256_set1_pd(0.5), z)),
                                   _mm256_mul_pd(_mm256_mul_pd(z, z), pc));
  const __m256i q = _mm256_cvtepi32_epi64(_mm256_cvtpd_epi32(n));  // quadrant n mod 4 in 64-bit lanes
  const __m256i one = _mm256_set1_epi64x(1), two = _mm256_set1_epi64x(2);
  const __m256d swap = _mm256_castsi256_pd(_mm256_cmpeq_epi64(_mm256_and_si256(q, one), one));
  const __m256d sv = sel4(sy, cy, swap), cv = sel4(cy, sy, swap);
  const __m256i sneg = _mm256_slli_epi64(_mm256_and_si256(q, two), 62);  // bit 1 of q -> the sign bit
  const __m256i cneg = _mm256_slli_epi64(_mm256_and_si256(_mm256_add_epi64(q, one), two), 62);
  *s = _mm256_cvtpd_ps(_mm256_xor_pd(sv, _mm256_castsi256_pd(sneg)));
  *c = _mm256_cvtpd_ps(_mm256_xor_pd(cv, _mm256_castsi256_pd(cneg)));
}
#endif
#ifdef ROPEKIT_AVX512
// 8 lanes: the same operations as sincos4 (and sincos_scalar), in the same order.
inline void sincos8(__m512d w, __m256* c, __m256* s) {
  const __m512d a = _mm512_cvtps_pd(_mm512_cvtpd_ps(w));
  const __m512d n = _mm512_roundscale_pd(_mm512_mul_pd(a, _mm512_set1_pd(kTwoOPi)),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512d y = _mm512_sub_pd(a, _mm512_mul_pd(n, _mm512_set1_pd(kPiO2))), z = _mm512_mul_pd(y, y);
  __m512d ps = _mm512_add_pd(_mm512_set1_pd(kS2), _mm512_mul_pd(z, _mm512_set1_pd(kS3)));
  ps = _mm512_add_pd(_mm512_set1_pd(kS1), _mm512_mul_pd(z, ps));
  const __m512d sy = _mm512_add_pd(y, _mm512_mul_pd(_mm512_mul_pd(y, z), ps));
  __m512d pc = _mm512_add_pd(_mm512_set1_pd(kC2), _mm512_mul_pd(z, _mm512_set1_pd(kC3)));
  pc = _mm512_add_pd(_mm512_set1_pd(kC1), _mm512_mul_pd(z, pc));
  const __m512d cy = _mm512_add_pd(_mm512_sub_pd(_mm512_set1_pd(1.0), _mm512_mul_pd(_mm512_set1_pd(0.5), z)),
                                   _mm512_mul_pd(_mm512_mul_pd(z, z), pc));
  const __m512i q = _mm512_cvtepi32_epi64(_mm512_cvtpd_epi32(n));  // quadrant n mod 4 in 64-bit lanes
  const __m512i one = _mm512_set1_epi64(1), two = _mm512_set1_epi64(2);
  const __mmask8 swap = _mm512_test_epi64_mask(q, one);
  const __m512d sv = _mm512_mask_blend_pd(swap, sy, cy), cv = _mm512_mask_blend_pd(swap, cy, sy);
  const __m512i sneg = _mm512_slli_epi64(_mm512_and_si512(q, two), 62);  // bit 1 of q -> the sign bit
  const __m512i cneg = _mm512_slli_epi64(_mm512_and_si512(_mm512_add_epi64(q, one), two), 62);
  *s = _mm512_cvtpd_ps(_mm512_castsi512_pd(_mm512_xor_si512(_mm512_castpd_si512(sv), sneg)));
  *c = _mm512_cvtpd_ps(_mm512_castsi512_pd(_mm512_xor_si512(_mm512_castpd_si512(cv), cneg)));
}
#endif

// cos/sin of position p for the r pairs into c_out/s_out (float32, unit stride), times scale; cst: [4, r].
inline void cos_sin_row(int64_t p, const double* cst, int64_t r, float scale, float* c_out, float* s_out) {
  constexpr int64_t mask = (int64_t(1) << 21) - 1;
  const int64_t d0 = p & mask, d1 = (p >> 21) & mask, d2 = p >> 42;  // arithmetic shift: d2 signed
  const int mode = (p < kDirectLimit && p > -kDirectLimit) ? 0 : (d2 != 0 ? 3 : (d1 != 0 ? 2 : 1));
  const double pf = (double)p, f0 = (double)d0, f1 = (double)d1, f2 = (double)d2;
  int64_t j = 0;
#ifdef ROPEKIT_AVX512
  for (; j + 8 <= r; j += 8) {
    __m256 c, s;
    sincos8(angle8(cst, r, j, pf, f0, f1, f2, mode), &c, &s);
    _mm256_storeu_ps(c_out + j, c);
    _mm256_storeu_ps(s_out + j, s);
  }
#endif
#ifdef __AVX2__
  for (; j + 4 <= r; j += 4) {
    __m128 c, s;
    sincos4(angle4(cst, r, j, pf, f0, f1, f2, mode), &c, &s);
    _mm_storeu_ps(c_out + j, c);
    _mm_storeu_ps(s_out + j, s);
  }
#endif
  for (; j < r; ++j) sincos_scalar(angle_scalar(cst, r, j, pf, f0, f1, f2, mode), c_out + j, s_out + j);
  if (scale != 1.0f) {
    for (int64_t i = 0; i < r; ++i) { c_out[i] *= scale; s_out[i] *= scale; }
  }
}

// Tokens per tile of the table-free walk over [B, H, T, D] storage: ROPEKIT_CPU_ANGLE_TILE (read once per
// process; 0: the token-by-token walk).
inline int64_t angle_tile() {
  static const int64_t n = [] {
    const char* e = std::getenv("ROPEKIT_CPU_ANGLE_TILE");
    return e == nullptr ? int64_t(1024) : std::max<int64_t>(0, std::atoll(e));
  }();
  return n;
}

// The cos/sin of token (b, t) are computed once into a stack buffer and used for every head of q and then of k of
// that token: rows are walked (batch, token) outer, heads inner, in any storage order.
template <typename S, bool INTERLEAVED, bool CONJ, int NR, bool NT>
void run_angles(const Side* sides, int n_sides, const at::Tensor& positions, const at::Tensor& cst, float scale) {
  using R = typename S::raw;
  const int64_t r = cst.size(1), B = sides[0].B, T = sides[0].T;
  const int64_t* pp = positions.data_ptr<int64_t>();
  const int64_t pb = positions.size(0) == 1 ? 0 : positions.stride(0), pt = positions.stride(1);
  const double* cp = cst.data_ptr<double>();
  int64_t heads = 0;
  for (int i = 0; i < n_sides; ++i) heads += sides[i].H;
  if (!sides[0].heads_inner && angle_tile() > 0) {
    // [B, H, T, D] storage: cos/sin of a tile of tokens into a buffer, then the tile's rows `group` heads at a time,
    // token by token (as the table walk; head_group). One positions row for every batch row (pb == 0): each tile's
    // cos/sin serve all batch rows (tiles shrink until there is one per thread).
    const bool shared = pb == 0 && B > 1;
    int64_t tile = angle_tile();
    if (shared) tile = std::max<int64_t>(64, std::min(tile, (T + at::get_num_threads() - 1) / at::get_num_threads()));
    const int64_t nblk = (T + tile - 1) / tile, group = head_group();
    at::parallel_for(0, shared ? nblk : B * nblk, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> cbuf(tile * r), sbuf(tile * r);
      for (int64_t u = begin; u < end; ++u) {
        const int64_t b_lo = shared ? 0 : u / nblk, b_hi = shared ? B : b_lo + 1;
        const int64_t t0 = (u % nblk) * tile, n = std::min(T - t0, tile);
        for (int64_t i = 0; i < n; ++i) {
          cos_sin_row(pp[b_lo * pb + (t0 + i) * pt], cp, r, scale, cbuf.data() + i * r, sbuf.data() + i * r);
        }
        for (int64_t b = b_lo; b < b_hi; ++b) {
          for (int side_i = 0; side_i < n_sides; ++side_i) {
            const Side& sd = sides[side_i];
            if (sd.B * sd.H * sd.T == 0) continue;
            for (int64_t h0 = 0; h0 < sd.H; h0 += group) {
              const int64_t g_n = std::min(group, sd.H - h0);
              const R* x = static_cast<const R*>(sd.x) + b * sd.xb + h0 * sd.xh + t0 * sd.xt;
              R* o = static_cast<R*>(sd.o) + b * sd.ob + h0 * sd.oh + t0 * sd.ot;
              for (int64_t i = 0; i < n; ++i, x += sd.xt, o += sd.ot) {
                rotate_group<S, INTERLEAVED, CONJ, NR, NT>(x, sd.xh, o, sd.oh, g_n, cbuf.data() + i * r,
                                                           sbuf.data() + i * r, r, sd.D);
              }
            }
          }
        }
      }
#ifdef ROPEKIT_STREAM
      if (NT) _mm_sfence();
#endif
    });
    return;
  }
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, sides[0].D * heads));
  at::parallel_for(0, B * T, grain, [&](int64_t begin, int64_t end) {
    alignas(32) float cbuf[kMaxPairs], sbuf[kMaxPairs];
    for (int64_t m = begin; m < end; ++m) {
      const int64_t b = m / T, t = m % T;
      cos_sin_row(pp[b * pb + t * pt], cp, r, scale, cbuf, sbuf);
      for (int i = 0; i < n_sides; ++i) {
        const Side& sd = sides[i];
        if (sd.B * sd.H * sd.T == 0) continue;
        const R* x = static_cast<const R*>(sd.x) + b * sd.xb + t * sd.xt;
        R* o = static_cast<R*>(sd.o) + b * sd.ob + t * sd.ot;
        for (int64_t h = 0; h < sd.H; ++h, x += sd.xh, o += sd.oh) {
          rotate_row<S, INTERLEAVED, CONJ, NR, NT>(x, o, cbuf, sbuf, r, sd.D);
        }
      }
    }
#ifdef ROPEKIT_STREAM
    if (NT) _mm_sfence();
#endif
  });
}

template <typename S, int NR, bool NT>
void angles_flags(const Side* s, int n, const at::Tensor& p, const at::Tensor& cst, float scale, bool interleaved,
                  bool conj) {
  if (interleaved && conj) run_angles<S, true, true, NR, NT>(s, n, p, cst, scale);
  else if (interleaved) run_angles<S, true, false, NR, NT>(s, n, p, cst, scale);
  else if (conj) run_angles<S, false, true, NR, NT>(s, n, p, cst, scale);
  else run_angles<S, false, false, NR, NT>(s, n, p, cst, scale);
}

template <typename S>
void angles_dtype(const Side* s, int n, const at::Tensor& p, const at::Tensor& cst, float scale, bool interleaved,
                  bool conj, bool stream) {
  const int64_t r = cst.size(1);
#ifdef ROPEKIT_SIMD
  if constexpr (kVectorRows<S>) {
    if constexpr (kCanStream) {
      if (stream) {
        if (r == 64) return angles_flags<S, 64, true>(s, n, p, cst, scale, interleaved, conj);
        return angles_flags<S, 0, true>(s, n, p, cst, scale, interleaved, conj);
      }
    }
    if (r == 32) return angles_flags<S, 32, false>(s, n, p, cst, scale, interleaved, conj);
    if (r == 64) return angles_flags<S, 64, false>(s, n, p, cst, scale, interleaved, conj);
  }
#endif
  (void)r;
  angles_flags<S, 0, false>(s, n, p, cst, scale, interleaved, conj);
}

}  // namespace

// Rotate q into q_out and k into k_out with angles computed in the kernel from positions [Bp, T] int64 and the
// constants [4, r] (c_0, c_1, c_2, f), cos/sin times scale; float32/bf16/fp16 storage. Returns whether streaming
// stores ran.
bool rotary_qk_angles(const at::Tensor& q, const at::Tensor& k, at::Tensor q_out, at::Tensor k_out,
                      const at::Tensor& positions, const at::Tensor& cst, double scale, bool interleaved, bool conj,
                      int64_t stream_min_bytes) {
  TORCH_CHECK(cst.dim() == 2 && cst.size(0) == 4 && cst.is_contiguous() && cst.scalar_type() == at::kDouble,
              "ropekit: constants must be [4, r] contiguous float64");
  TORCH_CHECK(cst.size(1) <= kMaxPairs, "ropekit: at most ", kMaxPairs, " rotary pairs in the table-free kernel");
  TORCH_CHECK(positions.dim() == 2 && positions.scalar_type() == at::kLong, "ropekit: positions must be [Bp, T]");
  Side sides[2];
  int n = 0;
  sides[n++] = make_side(q, q_out, cst, true);
  if (k.defined() && k.numel()) sides[n++] = make_side(k, k_out, cst, true);
  TORCH_CHECK(n == 1 || (sides[1].B == sides[0].B && sides[1].T == sides[0].T), "ropekit: q and k must share B, T");
  TORCH_CHECK(positions.size(1) == sides[0].T && (positions.size(0) == 1 || positions.size(0) == sides[0].B),
              "ropekit: positions must be [1 or B, T]");
  const auto dt = q.scalar_type();
  TORCH_CHECK(n == 1 || k.scalar_type() == dt, "ropekit: q and k must share a dtype");
  const int64_t r = cst.size(1), elem = q.element_size();
  const bool stream = want_stream(sides, n, r, interleaved, elem, stream_min_bytes);
  const float sc = (float)scale;
  if (dt == at::kFloat) angles_dtype<F32>(sides, n, positions, cst, sc, interleaved, conj, stream);
  else if (dt == at::kBFloat16) angles_dtype<BF16>(sides, n, positions, cst, sc, interleaved, conj, stream);
  else if (dt == at::kHalf) angles_dtype<F16>(sides, n, positions, cst, sc, interleaved, conj, stream);
  else TORCH_CHECK(false, "ropekit: the table-free kernel takes float32/bf16/fp16, got ", dt);
  return stream;
}

// angles [N, r] float32 of int64 positions [N]: rope_angles' numbers: the digit split for every position once any
// |p| >= 2**29 (as rope_angles decides for the whole tensor; one scan of the positions), else the float64 product.
at::Tensor rope_angles32(const at::Tensor& positions, const at::Tensor& cst) {
  TORCH_CHECK(positions.dim() == 1 && positions.scalar_type() == at::kLong, "ropekit: positions must be [N] int64");
  TORCH_CHECK(cst.dim() == 2 && cst.size(0) == 4 && cst.is_contiguous() && cst.scalar_type() == at::kDouble,
              "ropekit: constants must be [4, r] contiguous float64");
  auto out = at::empty({positions.size(0), cst.size(1)}, positions.options().dtype(at::kFloat));
  const int64_t n = positions.size(0), r = cst.size(1), ps = positions.stride(0);
  const int64_t* pp = positions.data_ptr<int64_t>();
  const double* cp = cst.data_ptr<double>();
  float* o = out.data_ptr<float>();
  bool split_all = false;
  for (int64_t i = 0; i < n && !split_all; ++i) {
    split_all = pp[i * ps] >= kDirectLimit || pp[i * ps] <= -kDirectLimit;
  }
  at::parallel_for(0, n, std::max<int64_t>(1, 32768 / std::max<int64_t>(1, r)), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) angles_row(pp[i * ps], cp, r, o + i * r, split_all);
  });
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("rotary_qk", &rotary_qk, "Rotate q into q_out and k into k_out; returns whether streaming stores ran");
  m.def("rope_angles32", &rope_angles32, "rope_angles' float32 angles [N, r] of int64 positions [N]");
  m.def("rotary_qk_angles", &rotary_qk_angles, "Table-free rotation: angles from positions in the kernel");
}
