// libFuzzer target: arbitrary bytes as a safetensors image. Parsed from memory (SafetensorsSet::from_buffer
// runs the same validation as open_file), then every tensor's bytes are read so that ASan catches a view
// that points outside the image, and the invariants callers rely on are checked.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  msa::SafetensorsSet set;
  msa::Status st = msa::SafetensorsSet::from_buffer(data, size, "fuzz.safetensors", &set);
  if (!st.ok()) {
    if (st.message().empty()) std::abort();
    return 0;
  }
  uint8_t acc = 0;
  for (const msa::TensorInfo& t : set) {
    if (set.find(t.name) != &t) std::abort();
    if (t.nbytes() != t.view.nbytes()) std::abort();
    if (t.nbytes() && reinterpret_cast<uintptr_t>(t.view.data) % msa::dtype_size(t.dtype) != 0) std::abort();
    const uint8_t* p = static_cast<const uint8_t*>(t.view.data);
    for (size_t i = 0; i < t.nbytes(); ++i) acc = static_cast<uint8_t>(acc ^ p[i]);
  }
  volatile uint8_t sink = acc;
  (void)sink;
  return 0;
}
