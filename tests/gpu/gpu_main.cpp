// GPU tests. Without a CUDA device they print a visible SKIP line and exit 77 (ctest reports "skipped").
#include <cstdio>

#include "device.h"

int main() {
  int n = msa::cuda::device_count();
  if (n == 0) {
    std::printf("SKIP: no CUDA device present; GPU tests skipped (the CUDA backend was compiled)\n");
    return 77;
  }
  std::printf("CUDA devices: %d; device 0: %s\n", n, msa::cuda::device_name(0));
  int rc = msa::cuda::self_test();
  std::printf("cuda self_test: %s\n", rc == 0 ? "ok" : "FAILED");
  return rc == 0 ? 0 : 1;
}
