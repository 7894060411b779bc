// CUDA backend entry points usable from host C++ code that is compiled without nvcc.
#pragma once

namespace msa::cuda {

// Number of CUDA devices visible to this process; 0 when there is no driver or no device (never throws).
int device_count();

// Short description of device `index` ("NVIDIA H200, sm_90, 139 GiB") or an empty string.
const char* device_name(int index);

// Runs a tiny vector-add kernel on device 0 and checks the result: proves the toolchain and the driver
// work together. Returns 0 on success, -1 without a device, -2 on a wrong result or CUDA error.
int self_test();

}  // namespace msa::cuda
