// Matrix-vector products for batch-1 decoding on x86 CPUs with AVX-512 and VNNI.
//
// Decoding one token multiplies one activation vector by every weight matrix, so each weight
// byte is read once and used once: the speed is how fast the weights stream from memory.
// These kernels read each weight row front to back in one sequential stream (the pattern a
// CPU's hardware prefetcher follows best), keep the activation vector in L1, and split the
// rows across the threads PyTorch is set to use (at::parallel_for).
//
// * gemv_f32: float32 weights (out, in), float32 activations.
// * gemv_q8:  int8 weights, one scale per output row (llmnotes' per-row int8 format).
// * gemv_q4:  4-bit weights in groups of 32..256 along the input, one scale per group
//             (symmetric, llama.cpp Q4_0's format when the group is 32), repacked by pack_q4.
//
// The integer kernels quantize the activation vector to int8 in blocks of 32 values, one
// float scale per block (as llama.cpp does for Q8_0 and Q4_0), and multiply int8 by int8 with
// VNNI's vpdpbusd (unsigned x signed bytes, 4 products summed into each int32 lane). To fit
// its unsigned operand, |x| is used and x's sign is moved onto the weight byte.
//
// llmnotes/native.py compiles this file on first use and checks every kernel against PyTorch.

#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include <cmath>
#include <vector>

namespace {

constexpr int64_t kBlock = 32;     // activation values sharing one int8 scale
constexpr int64_t kChunk = 64;     // bytes per 512-bit register: two blocks
constexpr int64_t kMinBytes = 1 << 16;  // weight bytes per thread below which threading costs more
// Each row first asks for the cache line this far ahead of it. The hardware prefetcher follows
// a stream only after it has seen it, one 4 KiB page at a time; touching the data ahead keeps
// it running. On the EPYC measured, from memory, one core: no hint 16-17 GB/s; 8 KiB ahead 19;
// 32 KiB 21; 128 to 512 KiB 22-23 (a plateau; float32 and int8 alike).
constexpr int64_t kPrefetchBytes = 128 << 10;

int64_t grain_rows(int64_t row_bytes) { return std::max<int64_t>(1, kMinBytes / std::max<int64_t>(1, row_bytes)); }

// dtype_name: how messages spell `dtype` ("float32", "bfloat16", "int8").
void check_vector(const torch::Tensor& x, int64_t in_features, torch::ScalarType dtype = torch::kFloat32,
                  const char* dtype_name = "float32") {
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == dtype && x.is_contiguous(),
              "x must be a contiguous ", dtype_name, " CPU tensor");
  TORCH_CHECK(x.numel() == in_features, "x must hold one row of ", in_features, " values, got ", x.numel());
}

void check_matrix(const torch::Tensor& w, const char* name, torch::ScalarType dtype = torch::kFloat32,
                  const char* dtype_name = "float32") {
  TORCH_CHECK(w.dim() == 2 && w.scalar_type() == dtype && w.is_contiguous(),
              name, " must be a contiguous (out, in) ", dtype_name, " matrix");
}

// The data of a float32 operand (scales, bias) after checking it holds `count` values in a row.
const float* float_values(const torch::Tensor& t, int64_t count, const char* name) {
  TORCH_CHECK(t.scalar_type() == torch::kFloat32 && t.is_contiguous() && t.numel() == count,
              name, " must be a contiguous float32 tensor of ", count, " values");
  return t.data_ptr<float>();
}

const float* bias_ptr(const c10::optional<torch::Tensor>& bias, int64_t out_features) {
  return bias.has_value() ? float_values(*bias, out_features, "bias") : nullptr;
}

// ------------------------------------------------------------------------------------------
// float32
// ------------------------------------------------------------------------------------------

inline float dot_f32(const float* w, const float* x, int64_t K) {
  // Four independent accumulators hide the FMA latency; one row is one sequential stream.
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 64 <= K; k += 64) {
    a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + k), _mm512_loadu_ps(x + k), a0);
    a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + k + 16), _mm512_loadu_ps(x + k + 16), a1);
    a2 = _mm512_fmadd_ps(_mm512_loadu_ps(w + k + 32), _mm512_loadu_ps(x + k + 32), a2);
    a3 = _mm512_fmadd_ps(_mm512_loadu_ps(w + k + 48), _mm512_loadu_ps(x + k + 48), a3);
  }
  for (; k < K; k += 16) {
    const __mmask16 m = K - k >= 16 ? 0xFFFF : (__mmask16)((1u << (K - k)) - 1);
    a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, w + k), _mm512_maskz_loadu_ps(m, x + k), a0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

torch::Tensor gemv_f32(const torch::Tensor& x, const torch::Tensor& w, const c10::optional<torch::Tensor>& bias) {
  check_matrix(w, "w");
  const int64_t N = w.size(0), K = w.size(1);
  check_vector(x, K);
  auto y = torch::empty({N}, x.options());
  const float *W = w.data_ptr<float>(), *X = x.data_ptr<float>(), *B = bias_ptr(bias, N);
  float* Y = y.data_ptr<float>();
  at::parallel_for(0, N, grain_rows(K * 4), [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      _mm_prefetch((const char*)(W + n * K) + kPrefetchBytes, _MM_HINT_T0);
      Y[n] = dot_f32(W + n * K, X, K) + (B ? B[n] : 0.f);
    }
  });
  return y;
}

// bfloat16 weights and activations, on CPUs with AVX512-BF16 (checked at run time: the rest of
// this file needs only AVX-512 and VNNI, so only this function is compiled for it). vdpbf16ps
// multiplies 32 bf16 pairs and adds each two neighbouring products into one of 16 float lanes:
// one instruction per 64 bytes of weights. The sum is float32, rounded to bf16 once at the end
// (as PyTorch's bf16 F.linear does).
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 10)  // compilers that know AVX512-BF16
#define LLMNOTES_HAS_BF16 1
__attribute__((target("avx512bf16,avx512f,avx512bw"))) inline float dot_bf16(const uint16_t* w, const uint16_t* x, int64_t K) {
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 64 <= K; k += 64) {
    a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_loadu_si512(w + k), (__m512bh)_mm512_loadu_si512(x + k));
    a1 = _mm512_dpbf16_ps(a1, (__m512bh)_mm512_loadu_si512(w + k + 32), (__m512bh)_mm512_loadu_si512(x + k + 32));
  }
  for (; k < K; k += 32) {
    const __mmask32 m = K - k >= 32 ? 0xFFFFFFFFu : (__mmask32)((1u << (K - k)) - 1);
    a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_maskz_loadu_epi16(m, w + k), (__m512bh)_mm512_maskz_loadu_epi16(m, x + k));
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

#endif

// True where gemv_bf16 can run: compiled with AVX512-BF16 support and a CPU that has it.
bool has_bf16() {
#ifdef LLMNOTES_HAS_BF16
  return __builtin_cpu_supports("avx512bf16");
#else
  return false;
#endif
}

torch::Tensor gemv_bf16(const torch::Tensor& x, const torch::Tensor& w, const c10::optional<torch::Tensor>& bias) {
  TORCH_CHECK(has_bf16(), "gemv_bf16 needs a CPU with AVX512-BF16 and a compiler that knows it");
  check_matrix(w, "w", torch::kBFloat16, "bfloat16");
  const int64_t N = w.size(0), K = w.size(1);
  check_vector(x, K, torch::kBFloat16, "bfloat16");
  if (bias.has_value())
    TORCH_CHECK(bias->scalar_type() == torch::kBFloat16 && bias->is_contiguous() && bias->numel() == N,
                "bias must be a contiguous bfloat16 tensor of ", N, " values");
  auto y = torch::empty({N}, x.options());
  const uint16_t *W = (const uint16_t*)w.data_ptr(), *X = (const uint16_t*)x.data_ptr();
  const at::BFloat16* B = bias.has_value() ? bias->data_ptr<at::BFloat16>() : nullptr;
  at::BFloat16* Y = y.data_ptr<at::BFloat16>();
  at::parallel_for(0, N, grain_rows(K * 2), [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      _mm_prefetch((const char*)(W + n * K) + kPrefetchBytes, _MM_HINT_T0);
      // the bias is added in float32 before the one rounding, as oneDNN's bf16 addmm does
#ifdef LLMNOTES_HAS_BF16
      Y[n] = at::BFloat16(dot_bf16(W + n * K, X, K) + (B ? static_cast<float>(B[n]) : 0.f));
#endif
    }
  });
  return y;
}

// A few rows at once (a prompt, a small batch): every weight row is used once per input row,
// so the product is bound by multiply-adds, not memory. A tile of MR input rows by NR weight
// rows keeps MR x NR accumulators in registers: each step along the input loads MR + NR
// vectors and does MR x NR multiply-adds (4 x 4: 8 loads for 16), and the weight tile is read
// from memory once for all the input rows, which stay in L2.
template <int MR, int NR>
inline void tile_f32(const float* X, int64_t ldx, const float* W, int64_t K, float* Y, int64_t ldy, const float* B) {
  __m512 acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    __m512 w[NR];
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) w[j] = _mm512_loadu_ps(W + j * K + k);
#pragma GCC unroll 4
    for (int i = 0; i < MR; ++i) {
      const __m512 x = _mm512_loadu_ps(X + i * ldx + k);
#pragma GCC unroll 4
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_fmadd_ps(x, w[j], acc[i][j]);
    }
  }
  if (k < K) {  // the last partial vector
    const __mmask16 m = (__mmask16)((1u << (K - k)) - 1);
    for (int j = 0; j < NR; ++j) {
      const __m512 w = _mm512_maskz_loadu_ps(m, W + j * K + k);
      for (int i = 0; i < MR; ++i) acc[i][j] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, X + i * ldx + k), w, acc[i][j]);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) Y[i * ldy + j] = _mm512_reduce_add_ps(acc[i][j]) + (B ? B[j] : 0.f);
}

template <int NR>
inline void rows_f32(const float* X, int64_t M, int64_t K, const float* W, float* Y, int64_t N, const float* B) {
  int64_t i = 0;
  for (; i + 4 <= M; i += 4) tile_f32<4, NR>(X + i * K, K, W, K, Y + i * N, N, B);
  switch (M - i) {
    case 3: tile_f32<3, NR>(X + i * K, K, W, K, Y + i * N, N, B); break;
    case 2: tile_f32<2, NR>(X + i * K, K, W, K, Y + i * N, N, B); break;
    case 1: tile_f32<1, NR>(X + i * K, K, W, K, Y + i * N, N, B); break;
  }
}

torch::Tensor gemm_f32_rows(const torch::Tensor& x, const torch::Tensor& w, const c10::optional<torch::Tensor>& bias) {
  check_matrix(w, "w");
  TORCH_CHECK(x.dim() == 2 && x.device().is_cpu() && x.scalar_type() == torch::kFloat32 && x.is_contiguous(),
              "x must be a contiguous (rows, in) float32 CPU matrix");
  const int64_t N = w.size(0), K = w.size(1), M = x.size(0);
  TORCH_CHECK(x.size(1) == K, "x has ", x.size(1), " columns but w has ", K);
  auto y = torch::empty({M, N}, x.options());
  const float *W = w.data_ptr<float>(), *X = x.data_ptr<float>(), *B = bias_ptr(bias, N);
  float* Y = y.data_ptr<float>();
  const int64_t blocks = (N + 3) / 4;  // 4 weight rows per tile
  at::parallel_for(0, blocks, std::max<int64_t>(1, grain_rows(K * 4 * M) / 4), [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const int64_t n = b * 4, nr = std::min<int64_t>(4, N - n);
      const float* bn = B ? B + n : nullptr;
      if (nr == 4) rows_f32<4>(X, M, K, W + n * K, Y + n, N, bn);
      else if (nr == 3) rows_f32<3>(X, M, K, W + n * K, Y + n, N, bn);
      else if (nr == 2) rows_f32<2>(X, M, K, W + n * K, Y + n, N, bn);
      else rows_f32<1>(X, M, K, W + n * K, Y + n, N, bn);
    }
  });
  return y;
}

// ------------------------------------------------------------------------------------------
// the activation vector as int8 blocks
// ------------------------------------------------------------------------------------------

struct QuantizedVector {
  int64_t chunks;
  std::vector<uint8_t> magnitude;  // |q|, chunks * 64 bytes, zero past the end
  std::vector<uint64_t> negative;  // per chunk, bit i set where q[i] < 0
  std::vector<float> scale;        // per chunk, 16 lanes: the scale of block 2c (lanes 0-7), 2c+1 (8-15)
  std::vector<int8_t> value;       // q itself, for kernels whose weight bytes are unsigned
  std::vector<int32_t> minus8;     // per chunk, 16 lanes: -8 x (sum of the lane's 4 values of q)
};

inline __mmask16 first(int64_t n) { return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1); }

// Rounds x to int8 per block of 32 (AVX-512; round half to even, as torch.round). Reuses one
// buffer per thread: decoding calls this once per layer and token, for a vector of a few KiB.
// with_sums: also fill value and minus8, which only the 4-bit kernel reads.
const QuantizedVector& quantize_vector(const float* x, int64_t K, bool with_sums) {
  static thread_local QuantizedVector q;
  q.chunks = (K + kChunk - 1) / kChunk;
  q.magnitude.assign(q.chunks * kChunk, 0);
  q.negative.assign(q.chunks, 0);
  q.scale.assign(q.chunks * 16, 0.f);
  if (with_sums) q.value.assign(q.chunks * kChunk, 0);
  for (int64_t start = 0; start < K; start += kBlock) {
    const __m512 v0 = _mm512_maskz_loadu_ps(first(K - start), x + start);
    const __m512 v1 = _mm512_maskz_loadu_ps(first(K - start - 16), x + start + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    const __m512 inv = _mm512_set1_ps(amax > 0.f ? 127.f / amax : 0.f);
    const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, inv)), q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, inv));
    _mm_storeu_si128((__m128i*)(q.magnitude.data() + start), _mm512_cvtepi32_epi8(_mm512_abs_epi32(q0)));
    _mm_storeu_si128((__m128i*)(q.magnitude.data() + start + 16), _mm512_cvtepi32_epi8(_mm512_abs_epi32(q1)));
    if (with_sums) {
      _mm_storeu_si128((__m128i*)(q.value.data() + start), _mm512_cvtepi32_epi8(q0));
      _mm_storeu_si128((__m128i*)(q.value.data() + start + 16), _mm512_cvtepi32_epi8(q1));
    }
    const __m512i zero = _mm512_setzero_si512();
    const uint64_t signs = (uint64_t)_mm512_cmplt_epi32_mask(q0, zero) | ((uint64_t)_mm512_cmplt_epi32_mask(q1, zero) << 16);
    q.negative[start / kChunk] |= signs << (start % kChunk);
    const int64_t lane0 = (start / kChunk) * 16 + ((start / kBlock) % 2) * 8;
    for (int i = 0; i < 8; ++i) q.scale[lane0 + i] = amax / 127.f;
  }
  if (with_sums) {
    q.minus8.assign(q.chunks * 16, 0);
    for (int64_t k = 0; k < K; ++k) q.minus8[k / 4] -= 8 * q.value[k];
  }
  return q;
}

inline __mmask64 tail_mask(int64_t remaining) {
  return remaining >= 64 ? ~0ull : ((1ull << remaining) - 1);
}

// One chunk of signed weight bytes times the activation magnitudes, with the sign of x moved
// onto the weight, summed in 16 int32 lanes (4 products each) and converted to float.
inline __m512 signed_dot(__m512i w, __m512i magnitude, __mmask64 negative) {
  const __m512i signed_w = _mm512_mask_sub_epi8(w, negative, _mm512_setzero_si512(), w);
  return _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), magnitude, signed_w));
}

inline __m512i load_mag(const QuantizedVector& q, int64_t c) { return _mm512_loadu_si512(q.magnitude.data() + c * kChunk); }

// ------------------------------------------------------------------------------------------
// int8 weights, one scale per row
// ------------------------------------------------------------------------------------------

torch::Tensor gemv_q8(const torch::Tensor& x, const torch::Tensor& qweight, const torch::Tensor& row_scale,
                      const c10::optional<torch::Tensor>& bias) {
  check_matrix(qweight, "qweight", torch::kInt8, "int8");
  const int64_t N = qweight.size(0), K = qweight.size(1);
  const float *S = float_values(row_scale, N, "row_scale"), *B = bias_ptr(bias, N);
  check_vector(x, K);
  const QuantizedVector& q = quantize_vector(x.data_ptr<float>(), K, false);
  auto y = torch::empty({N}, x.options());
  const int8_t* W = qweight.data_ptr<int8_t>();
  float* Y = y.data_ptr<float>();
  at::parallel_for(0, N, grain_rows(K), [&](int64_t begin, int64_t end) {
    // One row at a time: on the EPYC measured, interleaving two rows (sharing the activation
    // loads) ran 2x faster from cache but 2x slower from memory, where decoding reads it.
    for (int64_t n = begin; n < end; ++n) {
      const int8_t* row = W + n * K;
      _mm_prefetch((const char*)row + kPrefetchBytes, _MM_HINT_T0);
      __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
      int64_t c = 0;
      for (; c + 2 <= K / kChunk; c += 2) {
        acc0 = _mm512_fmadd_ps(signed_dot(_mm512_loadu_si512(row + c * kChunk), load_mag(q, c), q.negative[c]),
                               _mm512_loadu_ps(q.scale.data() + c * 16), acc0);
        acc1 = _mm512_fmadd_ps(signed_dot(_mm512_loadu_si512(row + (c + 1) * kChunk), load_mag(q, c + 1), q.negative[c + 1]),
                               _mm512_loadu_ps(q.scale.data() + (c + 1) * 16), acc1);
      }
      for (; c < q.chunks; ++c)
        acc0 = _mm512_fmadd_ps(signed_dot(_mm512_maskz_loadu_epi8(tail_mask(K - c * kChunk), row + c * kChunk), load_mag(q, c), q.negative[c]),
                               _mm512_loadu_ps(q.scale.data() + c * 16), acc0);
      Y[n] = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) * S[n] + (B ? B[n] : 0.f);
    }
  });
  return y;
}

// ------------------------------------------------------------------------------------------
// 4-bit weights, one scale per group
// ------------------------------------------------------------------------------------------

// pack_q4: unsigned 4-bit codes (out, in), 0..15 meaning code - 8, to the kernel's layout:
// per 64-value chunk, 32 bytes whose low nibbles are values 0..31 and high nibbles 32..63.
torch::Tensor pack_q4(const torch::Tensor& codes) {
  TORCH_CHECK(codes.dim() == 2 && codes.scalar_type() == torch::kUInt8 && codes.is_contiguous(),
              "codes must be a contiguous (out, in) uint8 matrix of values 0..15");
  const int64_t N = codes.size(0), K = codes.size(1);
  TORCH_CHECK(K % kChunk == 0, "4-bit kernel needs in_features divisible by 64, got ", K);
  auto packed = torch::empty({N, K / 2}, codes.options());
  const uint8_t* C = codes.data_ptr<uint8_t>();
  uint8_t* P = packed.data_ptr<uint8_t>();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < K / kChunk; ++c)
      for (int64_t j = 0; j < 32; ++j) {
        const uint8_t lo = C[n * K + c * kChunk + j], hi = C[n * K + c * kChunk + 32 + j];
        TORCH_CHECK(lo < 16 && hi < 16, "4-bit codes must lie in 0..15");
        P[n * (K / 2) + c * 32 + j] = (uint8_t)(lo | (hi << 4));
      }
  return packed;
}

// 32 packed bytes -> 64 codes: low nibbles are values 0..31 of the chunk, high nibbles 32..63.
inline __m512i unpack_q4(const uint8_t* p) {
  const __m256i bytes = _mm256_loadu_si256((const __m256i*)p), low4 = _mm256_set1_epi8(0x0F);
  const __m256i lo = _mm256_and_si256(bytes, low4), hi = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low4);
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

// Two consecutive group scales spread over lanes 0-7 and 8-15.
inline __m512 scale_pair(const float* s) {
  const __m512i index = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
  return _mm512_permutexvar_ps(index, _mm512_castps128_ps512(_mm_castpd_ps(_mm_load_sd((const double*)s))));
}

torch::Tensor gemv_q4(const torch::Tensor& x, const torch::Tensor& packed, const torch::Tensor& group_scale,
                      int64_t group_size, const c10::optional<torch::Tensor>& bias) {
  TORCH_CHECK(packed.dim() == 2 && packed.scalar_type() == torch::kUInt8 && packed.is_contiguous(),
              "packed must come from pack_q4");
  const int64_t N = packed.size(0), K = packed.size(1) * 2;
  TORCH_CHECK(group_size % kBlock == 0 && K % group_size == 0, "group_size must be a multiple of 32 dividing ", K);
  const int64_t G = K / group_size;
  const float *S = float_values(group_scale, N * G, "group_scale (out, in / group_size)"), *B = bias_ptr(bias, N);
  check_vector(x, K);
  const QuantizedVector& q = quantize_vector(x.data_ptr<float>(), K, true);
  auto y = torch::empty({N}, x.options());
  const uint8_t* P = packed.data_ptr<uint8_t>();
  float* Y = y.data_ptr<float>();
  const int64_t blocks_per_group = group_size / kBlock;
  at::parallel_for(0, N, grain_rows(K / 2), [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      const uint8_t* row = P + n * (K / 2);
      _mm_prefetch((const char*)row + kPrefetchBytes, _MM_HINT_T0);
      const float* s = S + n * G;
      __m512 acc = _mm512_setzero_ps();
      for (int64_t c = 0; c < K / kChunk; ++c) {
        // codes 0..15 as the unsigned operand; the -8 is the accumulator's starting value
        const __m512i sums = _mm512_dpbusd_epi32(_mm512_loadu_si512(q.minus8.data() + c * 16), unpack_q4(row + c * 32),
                                                 _mm512_loadu_si512(q.value.data() + c * kChunk));
        const __m512 xs = _mm512_loadu_ps(q.scale.data() + c * 16);
        const __m512 ws = blocks_per_group == 1 ? scale_pair(s + 2 * c) : _mm512_set1_ps(s[(2 * c) / blocks_per_group]);
        acc = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(sums), xs), ws, acc);
      }
      Y[n] = _mm512_reduce_add_ps(acc) + (B ? B[n] : 0.f);
    }
  });
  return y;
}

// ------------------------------------------------------------------------------------------
// A whole GPT-2 decode step: every block for one new token, without Python in between
// ------------------------------------------------------------------------------------------

// Decoding one token through a GPT-2 block from Python costs about as much interpreter work
// (module calls, views, checks: some tens of microseconds per block) as the int8 products
// themselves. DecodePlan runs the same operations from C++: the ATen operators the Python
// forward calls (layer_norm, scaled_dot_product_attention, gelu, add) and the kernels above
// for the linear layers, in the same order, so its results equal the Python path's bit for bit
// when that path uses these kernels (llmnotes/fused.py builds it and checks that it pays).

struct PlanLinear {
  int kind;  // 0 float32, 1 int8 per row, 2 4-bit groups, 3 bfloat16
  torch::Tensor w, scale;
  c10::optional<torch::Tensor> bias;
  int64_t group;

  torch::Tensor operator()(const torch::Tensor& x) const {
    if (kind == 0) return gemv_f32(x, w, bias);
    if (kind == 3) return gemv_bf16(x, w, bias);
    if (kind == 1) return gemv_q8(x, w, scale, bias);
    return gemv_q4(x, w, scale, group, bias);
  }
};

struct PlanLayer {
  torch::Tensor ln1_w, ln2_w;
  c10::optional<torch::Tensor> ln1_b, ln2_b;
  PlanLinear attn, proj, fc, out;
};

class DecodePlan {
 public:
  DecodePlan(int64_t n_head, int64_t head_dim, double eps, torch::Tensor lnf_w, c10::optional<torch::Tensor> lnf_b)
      : n_head_(n_head), head_dim_(head_dim), eps_(eps), lnf_w_(lnf_w), lnf_b_(lnf_b) {}

  static PlanLinear linear(const std::string& kind, torch::Tensor w, c10::optional<torch::Tensor> scale,
                           c10::optional<torch::Tensor> bias, int64_t group) {
    const int code = kind == "f32" ? 0 : kind == "q8" ? 1 : kind == "q4" ? 2 : kind == "bf16" ? 3 : -1;
    TORCH_CHECK(code >= 0, "linear kind must be 'f32', 'bf16', 'q8' or 'q4', got '", kind, "'");
    TORCH_CHECK(code == 0 || code == 3 || scale.has_value(), "a quantized linear needs its scales");
    return PlanLinear{code, w, scale.has_value() ? *scale : torch::Tensor(), bias, group};
  }

  void add_layer(torch::Tensor ln1_w, c10::optional<torch::Tensor> ln1_b, torch::Tensor ln2_w,
                 c10::optional<torch::Tensor> ln2_b, py::tuple attn, py::tuple proj, py::tuple fc, py::tuple out) {
    auto unpack = [](const py::tuple& t) {
      TORCH_CHECK(t.size() == 5, "a linear is (kind, weight, scale, bias, group)");
      return linear(t[0].cast<std::string>(), t[1].cast<torch::Tensor>(), t[2].cast<c10::optional<torch::Tensor>>(),
                    t[3].cast<c10::optional<torch::Tensor>>(), t[4].cast<int64_t>());
    };
    layers_.push_back(PlanLayer{ln1_w, ln2_w, ln1_b, ln2_b, unpack(attn), unpack(proj), unpack(fc), unpack(out)});
  }

  // x: (1, 1, C) the new token's embedding; past: positions already cached; k_cache/v_cache: the
  // KVCache's per-layer (1, n_head, max_len, head_dim) tensors, written at position past.
  // Returns the final-LayerNorm hidden state (1, 1, C).
  torch::Tensor step(torch::Tensor x, int64_t past, const std::vector<torch::Tensor>& k_cache,
                     const std::vector<torch::Tensor>& v_cache) const {
    const int64_t C = x.size(-1), H = n_head_, D = head_dim_;
    TORCH_CHECK(k_cache.size() == layers_.size() && v_cache.size() == layers_.size(), "one cache tensor per layer");
    const at::AutoDispatchBelowADInplaceOrView no_autograd;  // decoding records no graph: skip autograd's dispatch
    for (size_t l = 0; l < layers_.size(); ++l) {
      const PlanLayer& L = layers_[l];
      const torch::Tensor h = at::layer_norm(x, {C}, L.ln1_w, L.ln1_b, eps_);
      const torch::Tensor qkv = L.attn(h.view({-1})).view({1, 1, 3 * H * D});
      const auto parts = qkv.split(H * D, 2);
      const torch::Tensor q = parts[0].view({1, 1, H, D}).transpose(1, 2);
      const torch::Tensor k = parts[1].view({1, 1, H, D}).transpose(1, 2);
      const torch::Tensor v = parts[2].view({1, 1, H, D}).transpose(1, 2);
      k_cache[l].slice(2, past, past + 1).copy_(k);
      v_cache[l].slice(2, past, past + 1).copy_(v);
      const torch::Tensor y = at::scaled_dot_product_attention(q, k_cache[l].slice(2, 0, past + 1),
                                                               v_cache[l].slice(2, 0, past + 1));
      const torch::Tensor a = L.proj(y.transpose(1, 2).contiguous().view({-1})).view({1, 1, C});
      x = x + a;
      const torch::Tensor h2 = at::layer_norm(x, {C}, L.ln2_w, L.ln2_b, eps_);
      const torch::Tensor f = at::gelu(L.fc(h2.view({-1})), "tanh");
      x = x + L.out(f).view({1, 1, C});
    }
    return at::layer_norm(x, {C}, lnf_w_, lnf_b_, eps_);
  }

 private:
  int64_t n_head_, head_dim_;
  double eps_;
  torch::Tensor lnf_w_;
  c10::optional<torch::Tensor> lnf_b_;
  std::vector<PlanLayer> layers_;
};

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  py::class_<DecodePlan>(m, "DecodePlan")
      .def(py::init<int64_t, int64_t, double, torch::Tensor, c10::optional<torch::Tensor>>(), py::arg("n_head"),
           py::arg("head_dim"), py::arg("eps"), py::arg("lnf_weight"), py::arg("lnf_bias"))
      .def("add_layer", &DecodePlan::add_layer, "one block: its two LayerNorms and four linears",
           py::arg("ln1_weight"), py::arg("ln1_bias"), py::arg("ln2_weight"), py::arg("ln2_bias"),
           py::arg("attn"), py::arg("proj"), py::arg("fc"), py::arg("out"))
      .def("step", &DecodePlan::step, "every block for one new token; returns the final-LayerNorm state",
           py::arg("x"), py::arg("past"), py::arg("k_cache"), py::arg("v_cache"),
           py::call_guard<py::gil_scoped_release>());
  m.def("gemv_f32", &gemv_f32, "y = w @ x + bias for one float32 row x", py::arg("x"), py::arg("w"), py::arg("bias"));
  m.def("has_bf16", &has_bf16, "whether gemv_bf16 runs here (compiler and CPU support AVX512-BF16)");
  m.def("gemv_bf16", &gemv_bf16, "y = w @ x + bias for one bfloat16 row x (AVX512-BF16 CPUs)",
        py::arg("x"), py::arg("w"), py::arg("bias"));
  m.def("gemm_f32_rows", &gemm_f32_rows, "y = x @ w.T + bias for a few float32 rows x (rows, in)",
        py::arg("x"), py::arg("w"), py::arg("bias"));
  m.def("gemv_q8", &gemv_q8, "y = (qweight @ x) * row_scale + bias, x quantized to int8 blocks of 32",
        py::arg("x"), py::arg("qweight"), py::arg("row_scale"), py::arg("bias"));
  m.def("pack_q4", &pack_q4, "4-bit codes (out, in) -> the layout gemv_q4 reads", py::arg("codes"));
  m.def("gemv_q4", &gemv_q4, "y = dequant(packed) @ x + bias, x quantized to int8 blocks of 32",
        py::arg("x"), py::arg("packed"), py::arg("group_scale"), py::arg("group_size"), py::arg("bias"));
}
