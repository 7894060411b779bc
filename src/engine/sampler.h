// Token selection for stage 3 (spec §6.2): greedy argmax, or sampling with the Hugging Face processor order
// Temperature → TopK → TopP followed by a multinomial draw from our own deterministic RNG.
//
// * Greedy (do_sample false, or temperature 0): argmax, the lowest id among equal maxima (NaNs ignored).
// * Temperature T: logits / T (f32).
// * TopK (k > 0): keeps every token whose scaled logit is >= the k-th largest (HF keeps ties at the boundary);
//   k = 0 disables it (HF's convention), k >= vocab keeps everything.
// * TopP (p < 1): with the kept tokens sorted by (logit desc, id asc), keeps the shortest prefix whose
//   "tail mass" rule matches HF's TopPLogitsWarper: a token is dropped when the probability mass of itself and
//   every token ranked below it is <= 1 - p; the top token is always kept. Probabilities in double.
// * Draw: u = uniform [0, 1) from xoshiro256** (seeded by splitmix64(seed)); walking the kept tokens (ranked as
//   above when top-p is active, else in id order — no sort of the vocabulary), the first whose cumulative
//   probability exceeds u * total is chosen. Same seed, same logits → same tokens, on every
//   platform (no std:: distributions, whose algorithms are implementation-defined).
#pragma once

#include <cstdint>
#include <vector>

#include "core/status.h"
#include "model/config.h"

namespace msa {

struct SamplingParams {
  // true: do_sample / temperature / top_k / top_p come from generation_config.json (GenerationDefaults;
  // greedy when the file is absent); the fields below are then ignored except `seed`.
  bool use_model_defaults = true;
  bool do_sample = false;
  float temperature = 1.0f;  // >= 0; 0 means greedy
  int32_t top_k = 0;         // >= 0; 0 disables
  float top_p = 1.0f;        // in (0, 1]
  uint64_t seed = 0;

  bool greedy() const { return !do_sample || temperature == 0.0f; }
};

// The parameters actually used: `p` itself, or the model's generation defaults when use_model_defaults.
SamplingParams resolve_sampling(const SamplingParams& p, const GenerationDefaults& g);

// kInvalidArgument for temperature < 0 or not finite, top_k < 0, top_p outside (0, 1].
Status validate_sampling(const SamplingParams& p);

// xoshiro256** seeded through splitmix64 (Blackman & Vigna). Deterministic across platforms.
class Rng {
 public:
  explicit Rng(uint64_t seed = 0) { reseed(seed); }
  void reseed(uint64_t seed);
  uint64_t next_u64();
  double next_double();  // uniform in [0, 1), 53 random bits

 private:
  uint64_t s_[4] = {0, 0, 0, 0};
};

class Sampler {
 public:
  // `params` must be resolved (use_model_defaults is ignored here) and valid.
  explicit Sampler(const SamplingParams& params);

  const SamplingParams& params() const { return params_; }

  // Picks a token from logits[0..n). Returns -1 only when n <= 0 or every logit is NaN.
  int32_t sample(const float* logits, int64_t n);

 private:
  SamplingParams params_;
  Rng rng_;
  std::vector<float> scaled_;
  std::vector<int32_t> cand_;
  std::vector<double> prob_;
};

}  // namespace msa
