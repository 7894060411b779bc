// libFuzzer target: arbitrary bytes as generation_config.json (parse_generation_config, src/model/config.cpp).
// Every outcome must be a Status (no exception, no crash). A parsed config must be in range (temperature in
// [0, 1e6], top_p in [0, 1], top_k >= 0, pad -1 or an id, eos ids in [0, INT32_MAX]) and survive a round trip:
// its values written back as JSON parse to the same values.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <nlohmann/json.hpp>

#include "model/config.h"

namespace {
void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_generation_config: invariant violated: %s\n", what);
    std::abort();
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  msa::GenerationDefaults g;
  const msa::Status st = msa::parse_generation_config(text, "fuzz/generation_config.json", &g);
  if (!st.ok()) {
    check(st.code() == msa::StatusCode::kConfig || st.code() == msa::StatusCode::kOutOfMemory,
          "error code is neither kConfig nor kOutOfMemory");
    check(st.message().find("fuzz/generation_config.json") != std::string::npos, "error does not name the file");
    return 0;
  }
  check(g.present, "present not set");
  check(std::isfinite(g.temperature) && g.temperature >= 0.0f && g.temperature <= 1e6f, "temperature out of range");
  check(std::isfinite(g.top_p) && g.top_p >= 0.0f && g.top_p <= 1.0f, "top_p out of range");
  check(g.top_k >= 0, "top_k < 0");
  check(g.pad_token_id >= -1, "pad_token_id < -1");
  for (int32_t id : g.eos_token_ids) check(id >= 0, "negative eos id");

  nlohmann::json j = nlohmann::json::object();
  j["do_sample"] = g.do_sample;
  j["temperature"] = static_cast<double>(g.temperature);
  j["top_p"] = static_cast<double>(g.top_p);
  j["top_k"] = g.top_k;
  if (g.pad_token_id >= 0) j["pad_token_id"] = g.pad_token_id;
  if (!g.eos_token_ids.empty()) j["eos_token_id"] = g.eos_token_ids;
  msa::GenerationDefaults back;
  check(msa::parse_generation_config(j.dump(), "fuzz/round_trip.json", &back).ok(), "round trip does not parse");
  check(back.do_sample == g.do_sample && back.temperature == g.temperature && back.top_p == g.top_p &&
            back.top_k == g.top_k && back.pad_token_id == g.pad_token_id && back.eos_token_ids == g.eos_token_ids,
        "round trip changed a value");
  return 0;
}
