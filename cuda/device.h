// CUDA backend entry points usable from host C++ code that is compiled without nvcc.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/status.h"

namespace msa::cuda {

// Number of CUDA devices visible to this process; 0 when there is no driver or no device (never throws).
int device_count();

// Short description of device `index` ("NVIDIA H200, sm_90, 139 GiB") or an empty string.
const char* device_name(int index);

// Runs a tiny vector-add kernel on device 0 and checks the result: proves the toolchain and the driver
// work together. Returns 0 on success, -1 without a device, -2 on a wrong result or CUDA error.
int self_test();

// Synthetic device data for tests and benchmarks (deterministic for a seed, generated on the GPU so that
// gigabytes need no host transfer; the current device, default stream, synchronised before returning).
// n int8 values uniform in [-127, 127]:
Status fill_random_int8(void* d_ptr, size_t n, uint64_t seed);
// n bf16 values uniform in [-1, 1) (round-to-nearest-even of an f32 uniform):
Status fill_random_bf16(void* d_ptr, size_t n, uint64_t seed);
// n f32 values uniform in [lo, hi):
Status fill_random_f32(float* d_ptr, size_t n, float lo, float hi, uint64_t seed);

}  // namespace msa::cuda
