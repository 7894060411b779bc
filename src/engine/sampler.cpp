#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "model/forward.h"

namespace msa {

SamplingParams resolve_sampling(const SamplingParams& p, const GenerationDefaults& g) {
  if (!p.use_model_defaults) return p;
  SamplingParams r;
  r.use_model_defaults = false;
  r.seed = p.seed;
  if (g.present) {
    r.do_sample = g.do_sample;
    r.temperature = g.temperature;
    r.top_k = g.top_k;
    r.top_p = g.top_p;
  }
  return r;
}

Status validate_sampling(const SamplingParams& p) {
  if (!std::isfinite(p.temperature) || p.temperature < 0.0f) {
    return Error(StatusCode::kInvalidArgument, "sampling: temperature must be >= 0, got ", p.temperature);
  }
  if (p.top_k < 0) return Error(StatusCode::kInvalidArgument, "sampling: top_k must be >= 0, got ", p.top_k);
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) {
    return Error(StatusCode::kInvalidArgument, "sampling: top_p must be in (0, 1], got ", p.top_p);
  }
  return Status::Ok();
}

// ------------------------------------------------------------------------------------------------ Rng

namespace {
uint64_t splitmix64(uint64_t* x) {
  uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

void Rng::reseed(uint64_t seed) {
  uint64_t x = seed;
  for (uint64_t& s : s_) s = splitmix64(&x);
}

uint64_t Rng::next_u64() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::next_double() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

// ------------------------------------------------------------------------------------------------ Sampler

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}

int32_t Sampler::sample(const float* logits, int64_t n) {
  if (n <= 0) return -1;
  if (params_.greedy()) return static_cast<int32_t>(argmax(logits, n));

  // Temperature; NaN logits never win.
  const float ninf = -std::numeric_limits<float>::infinity();
  scaled_.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const float x = logits[i];
    scaled_[static_cast<size_t>(i)] = std::isnan(x) ? ninf : x / params_.temperature;
  }

  // Top-k threshold: the k-th largest scaled logit (ties at the boundary are kept, as in HF).
  float threshold = ninf;
  if (params_.top_k > 0 && params_.top_k < n) {
    prob_.assign(scaled_.begin(), scaled_.end());  // reuse as scratch (double copy of the values)
    const auto kth = prob_.begin() + (params_.top_k - 1);
    std::nth_element(prob_.begin(), kth, prob_.end(), [](double a, double b) { return a > b; });
    threshold = static_cast<float>(*kth);
  }
  cand_.clear();
  for (int64_t i = 0; i < n; ++i) {
    const float x = scaled_[static_cast<size_t>(i)];
    if (x > ninf && x >= threshold) cand_.push_back(static_cast<int32_t>(i));
  }
  if (cand_.empty()) {
    const int64_t a = argmax(logits, n);
    return a < 0 ? -1 : static_cast<int32_t>(a);
  }
  // Top-p needs the candidates ranked by (logit desc, id asc); without it they stay in id order (no sort).
  const bool top_p = params_.top_p < 1.0f;
  if (top_p) {
    std::sort(cand_.begin(), cand_.end(), [this](int32_t a, int32_t b) {
      const float xa = scaled_[static_cast<size_t>(a)], xb = scaled_[static_cast<size_t>(b)];
      return xa != xb ? xa > xb : a < b;
    });
  }

  // Softmax over the candidates (double).
  float mxf = scaled_[static_cast<size_t>(cand_[0])];
  for (int32_t c : cand_) mxf = std::max(mxf, scaled_[static_cast<size_t>(c)]);
  const double mx = mxf;
  prob_.resize(cand_.size());
  double total = 0.0;
  for (size_t j = 0; j < cand_.size(); ++j) {
    prob_[j] = std::exp(static_cast<double>(scaled_[static_cast<size_t>(cand_[j])]) - mx);
    total += prob_[j];
  }

  // Top-p: drop the lowest-ranked tokens while their tail mass (own + below) is <= 1 - p.
  size_t keep = cand_.size();
  if (top_p) {
    const double cut = 1.0 - static_cast<double>(params_.top_p);
    double tail = 0.0;
    size_t j = cand_.size();
    while (j > 1) {
      tail += prob_[j - 1] / total;
      if (tail > cut) break;
      --j;
    }
    keep = j;
    total = 0.0;
    for (size_t t = 0; t < keep; ++t) total += prob_[t];
  }

  const double u = rng_.next_double() * total;
  double acc = 0.0;
  for (size_t j = 0; j < keep; ++j) {
    acc += prob_[j];
    if (u < acc) return cand_[j];
  }
  return cand_[keep - 1];
}

}  // namespace msa
