// What the x86-64 CPU we run on supports, detected once (CPUID), for the kernels that are compiled with
// function target attributes and chosen at run time (src/backend/cpu/kernels_avx2.cpp,
// src/router/score_kernels_avx2.cpp). The library itself is built for baseline x86-64. On other
// architectures every flag is false.
#pragma once

namespace msa {

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;  // reported for logs/benchmarks; no kernel requires it
};

// Detected on first use; thread-safe.
const CpuFeatures& cpu_features();

// AVX2 + FMA: the router's score kernels.
inline bool cpu_has_avx2_fma() { return cpu_features().avx2 && cpu_features().fma; }
// AVX2 + FMA + F16C: the CPU backend's kernels (f16 weights are converted with F16C).
inline bool cpu_has_avx2_fma_f16c() { return cpu_has_avx2_fma() && cpu_features().f16c; }

}  // namespace msa
