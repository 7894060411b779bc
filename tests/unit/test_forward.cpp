// The Qwen3 forward: against a double-precision reference written here from the spec (§2), internal
// consistency of the KV cache, segments and prefix rows, the observer hooks, argument validation, concurrent
// use of one model, and the transformers goldens under tests/data (tools/make_goldens.sh).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <sys/stat.h>
#include <thread>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/registry.h"
#include "core/dtype.h"
#include "model/config.h"
#include "model/device_model.h"
#include "model/forward.h"
#include "model/safetensors.h"
#include "model/weights.h"

using namespace msa;

namespace {

// ------------------------------------------------------------------------------------------------ tiny model

struct OwnedTensor {
  std::vector<uint8_t> bytes;
  std::vector<float> values;  // the exact values stored (after rounding to the dtype)
};

// A random model held in memory (no files): config, host weight views and their storage, and the weights
// prepared on a backend from the registry (MSA_BACKEND picks it: the suite runs on cpu-guarded that way).
struct TinyModel {
  ModelConfig cfg;
  ModelWeights w;  // host views (the double reference reads these)
  std::vector<std::unique_ptr<OwnedTensor>> store;
  std::mt19937 rng{0};
  DType dtype = DType::kF32;
  std::unique_ptr<Backend> be;       // declared before dw: the weights' buffers go back to it first
  std::unique_ptr<DeviceWeights> dw;

  const DeviceWeights& weights() const { return *dw; }
  Backend* backend() const { return be.get(); }

  // Values ~ N(0, std^2) (+ mean), rounded to the model's dtype.
  TensorView add(std::vector<int64_t> shape, float std_dev, float mean = 0.0f) {
    auto t = std::make_unique<OwnedTensor>();
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::normal_distribution<float> dist(0.0f, 1.0f);
    t->values.resize(static_cast<size_t>(n));
    t->bytes.resize(static_cast<size_t>(n) * dtype_size(dtype));
    for (int64_t i = 0; i < n; ++i) {
      float v = mean + std_dev * dist(rng);
      if (dtype == DType::kBF16) {
        const uint16_t h = f32_to_bf16(v);
        std::memcpy(t->bytes.data() + 2 * i, &h, 2);
        v = bf16_to_f32(h);
      } else if (dtype == DType::kF16) {
        const uint16_t h = f32_to_f16(v);
        std::memcpy(t->bytes.data() + 2 * i, &h, 2);
        v = f16_to_f32(h);
      } else {
        std::memcpy(t->bytes.data() + 4 * i, &v, 4);
      }
      t->values[static_cast<size_t>(i)] = v;
    }
    TensorView view;
    view.dtype = dtype;
    view.data = t->bytes.data();
    view.shape = std::move(shape);
    store.push_back(std::move(t));
    return view;
  }
};

struct TinyShape {
  int64_t vocab = 101, hidden = 40, inter = 72, layers = 3, heads = 4, kv_heads = 2, head_dim = 12;
  bool tie = true;
  double theta = 10000.0;
};

// Init as tools/make_tiny_checkpoint.py: linear N(0, 1/fan_in), residual writers 4x, embeddings std 0.5,
// norms 1 + 0.1 N(0, 1), so activations stay O(1) and logits are not degenerate.
std::unique_ptr<TinyModel> make_tiny(DType dt, const TinyShape& s, uint32_t seed = 42) {
  auto m = std::make_unique<TinyModel>();
  m->rng.seed(seed);
  m->dtype = dt;
  ModelConfig& c = m->cfg;
  c.model_type = "qwen3";
  c.vocab_size = s.vocab;
  c.hidden_size = s.hidden;
  c.intermediate_size = s.inter;
  c.num_hidden_layers = s.layers;
  c.num_attention_heads = s.heads;
  c.num_key_value_heads = s.kv_heads;
  c.head_dim = s.head_dim;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = s.theta;
  c.max_position_embeddings = 4096;
  c.tie_word_embeddings = s.tie;
  const int64_t qw = s.heads * s.head_dim, kvw = s.kv_heads * s.head_dim;
  auto lin = [&](int64_t out, int64_t in, float gain = 1.0f) {
    return m->add({out, in}, gain / std::sqrt(static_cast<float>(in)));
  };
  auto norm = [&](int64_t n) { return m->add({n}, 0.1f, 1.0f); };
  m->w.embed_tokens = m->add({s.vocab, s.hidden}, 0.5f);
  for (int64_t l = 0; l < s.layers; ++l) {
    LayerWeights lw;
    lw.input_norm = norm(s.hidden);
    lw.q_proj = lin(qw, s.hidden);
    lw.k_proj = lin(kvw, s.hidden);
    lw.v_proj = lin(kvw, s.hidden);
    lw.o_proj = lin(s.hidden, qw, 4.0f);
    lw.q_norm = norm(s.head_dim);
    lw.k_norm = norm(s.head_dim);
    lw.post_norm = norm(s.hidden);
    lw.gate_proj = lin(s.inter, s.hidden);
    lw.up_proj = lin(s.inter, s.hidden);
    lw.down_proj = lin(s.hidden, s.inter, 4.0f);
    m->w.layers.push_back(lw);
  }
  m->w.final_norm = norm(s.hidden);
  m->w.lm_head = s.tie ? m->w.embed_tokens : m->add({s.vocab, s.hidden}, 0.5f);
  Status st = create_backend(BackendParams(), &m->be);
  INFO(st.to_string());
  REQUIRE(st.ok());
  st = DeviceWeights::prepare(m->w, m->cfg, m->be.get(), &m->dw);
  INFO(st.to_string());
  REQUIRE(st.ok());
  return m;
}

// The weights of `m` prepared on another backend.
std::unique_ptr<DeviceWeights> prepare_on(const TinyModel& m, Backend* be) {
  std::unique_ptr<DeviceWeights> dw;
  const Status st = DeviceWeights::prepare(m.w, m.cfg, be, &dw);
  INFO(st.to_string());
  REQUIRE(st.ok());
  return dw;
}

// Host copies of a buffer of backend memory.
std::vector<float> download_floats(Backend* be, const float* p, int64_t n) {
  std::vector<float> v;
  const Status st = download_vector(be, p, static_cast<size_t>(n), &v);
  INFO(st.to_string());
  REQUIRE(st.ok());
  return v;
}

// K and V rows of one layer (prefix and cached) on the host.
struct HostKV {
  std::vector<float> k, v;
};
HostKV host_kv(const LayerKV& l) {
  HostKV h;
  const Status st = l.download(&h.k, &h.v);
  INFO(st.to_string());
  REQUIRE(st.ok());
  return h;
}
std::vector<HostKV> host_kv(const KVContext& kv) {
  std::vector<HostKV> out;
  for (const LayerKV& l : kv.layers) out.push_back(host_kv(l));
  return out;
}
bool operator==(const HostKV& a, const HostKV& b) { return a.k == b.k && a.v == b.v; }

// ------------------------------------------------------------------------------------------------ reference

std::vector<double> vals(const TensorView& t) {
  std::vector<double> v(static_cast<size_t>(t.numel()));
  const uint8_t* p = static_cast<const uint8_t*>(t.data);
  for (size_t i = 0; i < v.size(); ++i) {
    if (t.dtype == DType::kBF16) {
      uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      v[i] = bf16_to_f32(h);
    } else if (t.dtype == DType::kF16) {
      uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      v[i] = f16_to_f32(h);
    } else {
      float f;
      std::memcpy(&f, p + 4 * i, 4);
      v[i] = f;
    }
  }
  return v;
}

using Mat = std::vector<double>;  // row-major

Mat ref_linear(const Mat& x, int64_t n, int64_t in, const TensorView& w) {
  const std::vector<double> wv = vals(w);
  const int64_t out = w.dim(0);
  Mat y(static_cast<size_t>(n * out), 0.0);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t o = 0; o < out; ++o) {
      double s = 0;
      for (int64_t i = 0; i < in; ++i) s += x[static_cast<size_t>(t * in + i)] * wv[static_cast<size_t>(o * in + i)];
      y[static_cast<size_t>(t * out + o)] = s;
    }
  return y;
}

void ref_rmsnorm(Mat* x, int64_t rows, int64_t dim, const TensorView& w, double eps) {
  const std::vector<double> wv = vals(w);
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += (*x)[static_cast<size_t>(r * dim + i)] * (*x)[static_cast<size_t>(r * dim + i)];
    const double inv = 1.0 / std::sqrt(ss / static_cast<double>(dim) + eps);
    for (int64_t i = 0; i < dim; ++i) (*x)[static_cast<size_t>(r * dim + i)] *= inv * wv[static_cast<size_t>(i)];
  }
}

void ref_rope(Mat* x, int64_t n, int64_t heads, int64_t d, const std::vector<int32_t>& pos, double theta) {
  const int64_t half = d / 2;
  for (int64_t t = 0; t < n; ++t)
    for (int64_t h = 0; h < heads; ++h) {
      double* v = x->data() + (t * heads + h) * d;
      for (int64_t i = 0; i < half; ++i) {
        const double inv = 1.0 / std::pow(theta, static_cast<double>(2 * i) / static_cast<double>(d));
        const double a = inv * pos[static_cast<size_t>(t)], c = std::cos(a), s = std::sin(a);
        const double x0 = v[i], x1 = v[i + half];
        v[i] = x0 * c - x1 * s;
        v[i + half] = x1 * c + x0 * s;
      }
    }
}

// Forward in double (positions 0..n-1, causal or bidirectional): logits of every position [n, vocab].
Mat reference_forward(const TinyModel& m, const std::vector<int32_t>& tokens, bool causal = true) {
  const ModelConfig& c = m.cfg;
  const int64_t n = static_cast<int64_t>(tokens.size()), hd = c.hidden_size, d = c.head_dim;
  const int64_t hq = c.num_attention_heads, hkv = c.num_key_value_heads, group = hq / hkv;
  std::vector<int32_t> pos(tokens.size());
  for (size_t i = 0; i < pos.size(); ++i) pos[i] = static_cast<int32_t>(i);
  const std::vector<double> emb = vals(m.w.embed_tokens);
  Mat x(static_cast<size_t>(n * hd));
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < hd; ++i) x[static_cast<size_t>(t * hd + i)] = emb[static_cast<size_t>(tokens[static_cast<size_t>(t)] * hd + i)];
  for (const LayerWeights& lw : m.w.layers) {
    Mat a = x;
    ref_rmsnorm(&a, n, hd, lw.input_norm, c.rms_norm_eps);
    Mat q = ref_linear(a, n, hd, lw.q_proj), k = ref_linear(a, n, hd, lw.k_proj), v = ref_linear(a, n, hd, lw.v_proj);
    ref_rmsnorm(&q, n * hq, d, lw.q_norm, c.rms_norm_eps);
    ref_rmsnorm(&k, n * hkv, d, lw.k_norm, c.rms_norm_eps);
    ref_rope(&q, n, hq, d, pos, c.rope_theta);
    ref_rope(&k, n, hkv, d, pos, c.rope_theta);
    Mat att(static_cast<size_t>(n * hq * d), 0.0);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t h = 0; h < hq; ++h) {
        const int64_t g = h / group;
        const int64_t n_keys = causal ? i + 1 : n;
        std::vector<double> s(static_cast<size_t>(n_keys));
        double mx = -1e300, sum = 0;
        for (int64_t j = 0; j < n_keys; ++j) {
          double dot = 0;
          for (int64_t e = 0; e < d; ++e) dot += q[static_cast<size_t>((i * hq + h) * d + e)] * k[static_cast<size_t>((j * hkv + g) * d + e)];
          s[static_cast<size_t>(j)] = dot / std::sqrt(static_cast<double>(d));
          mx = std::max(mx, s[static_cast<size_t>(j)]);
        }
        for (double& e : s) sum += (e = std::exp(e - mx));
        for (int64_t j = 0; j < n_keys; ++j)
          for (int64_t e = 0; e < d; ++e)
            att[static_cast<size_t>((i * hq + h) * d + e)] += s[static_cast<size_t>(j)] / sum * v[static_cast<size_t>((j * hkv + g) * d + e)];
      }
    Mat o = ref_linear(att, n, hq * d, lw.o_proj);
    for (size_t i = 0; i < x.size(); ++i) x[i] += o[i];
    Mat mm = x;
    ref_rmsnorm(&mm, n, hd, lw.post_norm, c.rms_norm_eps);
    Mat gt = ref_linear(mm, n, hd, lw.gate_proj), up = ref_linear(mm, n, hd, lw.up_proj);
    for (size_t i = 0; i < gt.size(); ++i) gt[i] = gt[i] / (1.0 + std::exp(-gt[i])) * up[i];
    Mat dn = ref_linear(gt, n, c.intermediate_size, lw.down_proj);
    for (size_t i = 0; i < x.size(); ++i) x[i] += dn[i];
  }
  ref_rmsnorm(&x, n, hd, m.w.final_norm, c.rms_norm_eps);
  return ref_linear(x, n, hd, m.w.lm_head);
}

// ------------------------------------------------------------------------------------------------ helpers

// max|a - b| / max|b| over the first n values.
template <typename A, typename B>
double rel_err(const A* a, const B* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    num = std::max(num, std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
    den = std::max(den, std::fabs(static_cast<double>(b[i])));
  }
  return den > 0 ? num / den : num;
}

std::vector<int32_t> random_tokens(std::mt19937& rng, int64_t n, int64_t vocab) {
  std::uniform_int_distribution<int32_t> dist(0, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int32_t& x : t) x = dist(rng);
  return t;
}

std::vector<int32_t> iota_positions(int64_t n, int32_t start = 0) {
  std::vector<int32_t> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[static_cast<size_t>(i)] = start + static_cast<int32_t>(i);
  return p;
}

std::vector<float> all_logits(const TinyModel& m, const std::vector<int32_t>& tokens) {
  std::vector<float> out(tokens.size() * static_cast<size_t>(m.cfg.vocab_size));
  const Status s = forward_logits(m.weights(), tokens.data(), static_cast<int64_t>(tokens.size()), out.data(), true);
  REQUIRE(s.ok());
  return out;
}

// Runs `tokens` at `positions` on `kv` and returns the logits of every new token.
std::vector<float> run(const TinyModel& m, KVContext* kv, const std::vector<int32_t>& tokens,
                       const std::vector<int32_t>& positions, const int32_t* segments = nullptr,
                       ForwardObserver* observer = nullptr, bool causal = true) {
  ForwardBatch b;
  b.tokens = tokens.data();
  b.positions = positions.data();
  b.segments = segments;
  b.n_tokens = static_cast<int64_t>(tokens.size());
  b.causal = causal;
  ForwardOptions o;
  o.logits = LogitsMode::kAll;
  o.observer = observer;
  ForwardWorkspace ws;
  std::vector<float> out(tokens.size() * static_cast<size_t>(m.cfg.vocab_size));
  const Status s = forward(m.weights(), b, kv, o, &ws, out.data(), static_cast<int64_t>(out.size()));
  INFO(s.to_string());
  REQUIRE(s.ok());
  return out;
}

const TinyShape kShapes[] = {
    TinyShape{},                                                    // GQA 2, head_dim 12, tied
    TinyShape{64, 24, 40, 2, 3, 1, 8, false, 1e6},                  // one KV head, untied
    TinyShape{97, 36, 52, 2, 2, 2, 18, true, 5e6},                  // MHA, head_dim 18
};

}  // namespace

// ------------------------------------------------------------------------------------------------ tests

TEST_CASE("forward matches a double-precision reference", "[forward]") {
  std::mt19937 rng(1);
  for (const TinyShape& s : kShapes) {
    for (DType dt : {DType::kBF16, DType::kF16, DType::kF32}) {
      auto m = make_tiny(dt, s);
      for (int64_t n : {int64_t{1}, int64_t{17}, int64_t{40}}) {
        const std::vector<int32_t> tokens = random_tokens(rng, n, s.vocab);
        const std::vector<float> ours = all_logits(*m, tokens);
        const Mat ref = reference_forward(*m, tokens);
        const double err = rel_err(ours.data(), ref.data(), ref.size());
        INFO("dtype " << dtype_name(dt) << " n " << n << " rel err " << err);
        REQUIRE(err <= 1e-5);
        // Last-position mode gives the last row.
        std::vector<float> last(static_cast<size_t>(s.vocab));
        REQUIRE(forward_logits(m->weights(), tokens.data(), n, last.data(), false).ok());
        REQUIRE(rel_err(last.data(), ours.data() + (n - 1) * s.vocab, last.size()) <= 1e-6);
      }
    }
  }
}

TEST_CASE("KV-cache decoding equals full recompute", "[forward]") {
  std::mt19937 rng(2);
  for (const TinyShape& s : kShapes) {
    auto m = make_tiny(DType::kBF16, s);
    const int64_t n = 23;
    const std::vector<int32_t> tokens = random_tokens(rng, n, s.vocab);
    const std::vector<float> full = all_logits(*m, tokens);
    // Prefill 8, then steps of 1, 3 and 1... tokens.
    KVContext kv;
    kv.init(m->cfg, m->backend());
    int64_t done = 0;
    const int64_t steps[] = {8, 1, 1, 3, 1, 5, 1, 1, 2};
    for (int64_t st : steps) {
      std::vector<int32_t> chunk(tokens.begin() + done, tokens.begin() + done + st);
      const std::vector<float> got = run(*m, &kv, chunk, iota_positions(st, static_cast<int32_t>(done)));
      const double err = rel_err(got.data(), full.data() + done * s.vocab, got.size());
      INFO("tokens [" << done << ", " << done + st << ") rel err " << err);
      REQUIRE(err <= 1e-5);
      done += st;
      REQUIRE(kv.n_cached() == done);
    }
    REQUIRE(done == n);
    // Rows appended without segment ids count as segment 0.
    REQUIRE(kv.segments == std::vector<int32_t>(static_cast<size_t>(n), 0));
    // Rolling back and re-running the tail gives the same logits.
    kv.truncate_cached(20);
    std::vector<int32_t> tail(tokens.begin() + 20, tokens.end());
    const std::vector<float> again = run(*m, &kv, tail, iota_positions(3, 20));
    REQUIRE(rel_err(again.data(), full.data() + 20 * s.vocab, again.size()) <= 1e-5);
    REQUIRE(kv.n_cached() == n);
    REQUIRE(kv.segments.size() == static_cast<size_t>(n));
  }
}

TEST_CASE("greedy_generate equals argmax of full recomputes", "[forward]") {
  std::mt19937 rng(3);
  auto m = make_tiny(DType::kF32, kShapes[0]);
  std::vector<int32_t> seq = random_tokens(rng, 5, kShapes[0].vocab);
  std::vector<int32_t> gen(12);
  REQUIRE(greedy_generate(m->weights(), seq.data(), 5, 12, gen.data()).ok());
  std::vector<float> last(static_cast<size_t>(m->cfg.vocab_size));
  for (int i = 0; i < 12; ++i) {
    REQUIRE(forward_logits(m->weights(), seq.data(), static_cast<int64_t>(seq.size()), last.data()).ok());
    REQUIRE(gen[static_cast<size_t>(i)] == argmax(last.data(), m->cfg.vocab_size));
    seq.push_back(gen[static_cast<size_t>(i)]);
  }
  const float ties[] = {1.0f, 3.0f, std::nanf(""), 3.0f};
  REQUIRE(argmax(ties, 4) == 1);
  REQUIRE(argmax(ties, 0) == -1);
}

TEST_CASE("segment-packed encoding equals encoding each document alone", "[forward]") {
  std::mt19937 rng(4);
  for (const TinyShape& s : kShapes) {
    auto m = make_tiny(DType::kBF16, s);
    const std::vector<int32_t> doc_a = random_tokens(rng, 9, s.vocab), doc_b = random_tokens(rng, 13, s.vocab);
    const std::vector<float> alone_a = all_logits(*m, doc_a), alone_b = all_logits(*m, doc_b);
    // Packed: [a | b], positions restart at 0, segment ids 5 and 2.
    std::vector<int32_t> tokens = doc_a, pos = iota_positions(9), seg(9, 5);
    tokens.insert(tokens.end(), doc_b.begin(), doc_b.end());
    const std::vector<int32_t> pos_b = iota_positions(13);
    pos.insert(pos.end(), pos_b.begin(), pos_b.end());
    seg.insert(seg.end(), 13, 2);
    KVContext kv;
    kv.init(m->cfg, m->backend());
    const std::vector<float> packed = run(*m, &kv, tokens, pos, seg.data());
    REQUIRE(kv.segments == seg);  // the context keeps every cached row's segment id
    REQUIRE(rel_err(packed.data(), alone_a.data(), alone_a.size()) <= 1e-5);
    REQUIRE(rel_err(packed.data() + 9 * s.vocab, alone_b.data(), alone_b.size()) <= 1e-5);
    // Above the GEMV threshold (9, 13 and 22 rows) the packed rows are bit-identical to the lone runs: every
    // op is row-wise or per-segment and the gemm kernels do not depend on the batch (the encoder relies on it).
    REQUIRE(std::memcmp(packed.data(), alone_a.data(), alone_a.size() * sizeof(float)) == 0);
    REQUIRE(std::memcmp(packed.data() + 9 * s.vocab, alone_b.data(), alone_b.size() * sizeof(float)) == 0);
    // Interleaved segments also work (rows of the other segment inside a token's range are skipped).
    std::vector<int32_t> inter_tokens, inter_pos, inter_seg;
    for (int i = 0; i < 13; ++i) {
      if (i < 9) {
        inter_tokens.push_back(doc_a[static_cast<size_t>(i)]);
        inter_pos.push_back(i);
        inter_seg.push_back(5);
      }
      inter_tokens.push_back(doc_b[static_cast<size_t>(i)]);
      inter_pos.push_back(i);
      inter_seg.push_back(2);
    }
    KVContext kv2;
    kv2.init(m->cfg, m->backend());
    const std::vector<float> mixed = run(*m, &kv2, inter_tokens, inter_pos, inter_seg.data());
    for (size_t r = 0, ia = 0, ib = 0; r < inter_tokens.size(); ++r) {
      const float* want = inter_seg[r] == 5 ? alone_a.data() + (ia++) * s.vocab : alone_b.data() + (ib++) * s.vocab;
      REQUIRE(rel_err(mixed.data() + r * s.vocab, want, static_cast<size_t>(s.vocab)) <= 1e-5);
    }
    // A later call continuing segment 2 sees only segment 2's cached rows.
    std::vector<int32_t> more = random_tokens(rng, 3, s.vocab), seg_more(3, 2);
    std::vector<int32_t> b_full = doc_b;
    b_full.insert(b_full.end(), more.begin(), more.end());
    const std::vector<float> cont = run(*m, &kv, more, iota_positions(3, 13), seg_more.data());
    const std::vector<float> b_alone_full = all_logits(*m, b_full);
    REQUIRE(rel_err(cont.data(), b_alone_full.data() + 13 * s.vocab, cont.size()) <= 1e-5);
    seg.insert(seg.end(), seg_more.begin(), seg_more.end());
    REQUIRE(kv.segments == seg);
  }
}

namespace {

// Copies every layer's cached K/V rows of `src` into the prefix of `dst`.
void copy_cache_to_prefix(const KVContext& src, KVContext* dst) {
  for (size_t l = 0; l < src.layers.size(); ++l) {
    const LayerKV& s = src.layers[l];
    // Backend pointers: the rows are copied on the backend (set_prefix), never read here.
    const int64_t off = s.n_prefix() * s.width();
    REQUIRE(dst->layers[l].set_prefix(s.k() + off, s.v() + off, s.n_cached()).ok());
  }
}

// Injects prefix rows taken from `source` before attention, the way MSA stage 2 injects memory chunks.
class InjectingObserver : public ForwardObserver {
 public:
  explicit InjectingObserver(const KVContext* source) : source_(source) {}
  Status before_attention(const LayerActivations& act, LayerKV* kv) override {
    const LayerKV& s = source_->layers[static_cast<size_t>(act.layer)];
    // Keep the rows already in the prefix (a "template" part) and add the rest after them.
    const int64_t have = kv->n_prefix();
    const int64_t off = (s.n_prefix() + have) * s.width();
    return kv->insert_prefix(have, s.k() + off, s.v() + off, s.n_cached() - have);
  }

 private:
  const KVContext* source_;
};

}  // namespace

TEST_CASE("prefix rows from an earlier forward equal the concatenated sequence", "[forward]") {
  std::mt19937 rng(5);
  for (const TinyShape& s : kShapes) {
    auto m = make_tiny(DType::kF32, s);
    const std::vector<int32_t> p = random_tokens(rng, 6, s.vocab), q = random_tokens(rng, 7, s.vocab);
    std::vector<int32_t> pq = p;
    pq.insert(pq.end(), q.begin(), q.end());
    const std::vector<float> full = all_logits(*m, pq);

    KVContext first;
    first.init(m->cfg, m->backend());
    run(*m, &first, p, iota_positions(6));
    // (1) Prefix set before the call.
    KVContext ctx;
    ctx.init(m->cfg, m->backend());
    copy_cache_to_prefix(first, &ctx);
    for (size_t l = 0; l < ctx.layers.size(); ++l) REQUIRE(host_kv(ctx.layers[l]) == host_kv(first.layers[l]));
    const std::vector<float> got = run(*m, &ctx, q, iota_positions(7, 6));
    REQUIRE(rel_err(got.data(), full.data() + 6 * s.vocab, got.size()) <= 1e-5);
    REQUIRE(ctx.layers[0].n_prefix() == 6);
    REQUIRE(ctx.n_cached() == 7);
    // ...and decoding continues on it.
    const std::vector<int32_t> next = {pq.back()};
    std::vector<int32_t> pqn = pq;
    pqn.push_back(next[0]);
    const std::vector<float> step = run(*m, &ctx, next, iota_positions(1, 13));
    const std::vector<float> full_n = all_logits(*m, pqn);
    REQUIRE(rel_err(step.data(), full_n.data() + 13 * s.vocab, step.size()) <= 1e-5);

    // (2) Injected by an observer before attention, after 2 rows already in the prefix.
    KVContext ctx2;
    ctx2.init(m->cfg, m->backend());
    for (size_t l = 0; l < ctx2.layers.size(); ++l) {
      const LayerKV& f = first.layers[l];
      REQUIRE(ctx2.layers[l].set_prefix(f.k(), f.v(), 2).ok());
    }
    InjectingObserver inject(&first);
    const std::vector<float> got2 = run(*m, &ctx2, q, iota_positions(7, 6), nullptr, &inject);
    REQUIRE(rel_err(got2.data(), full.data() + 6 * s.vocab, got2.size()) <= 1e-5);
    REQUIRE(ctx2.layers[1].n_prefix() == 6);
  }
}

TEST_CASE("LayerKV prefix editing", "[forward]") {
  std::unique_ptr<Backend> be;
  REQUIRE(create_backend(BackendParams(), &be).ok());
  // Rows live in backend memory: K and V of row r are (k0, k1) and (-k0, -k1), so a K/V mix-up shows.
  const float a[] = {1, 2, 3, 4}, b[] = {5, 6}, c[] = {7, 8, 9, 10};
  const float an[] = {-1, -2, -3, -4}, bn[] = {-5, -6}, cn[] = {-7, -8, -9, -10};
  DeviceBuffer da, db, dc, dan, dbn, dcn;
  REQUIRE(upload_vector(be.get(), a, 4, &da).ok());
  REQUIRE(upload_vector(be.get(), b, 2, &db).ok());
  REQUIRE(upload_vector(be.get(), c, 4, &dc).ok());
  REQUIRE(upload_vector(be.get(), an, 4, &dan).ok());
  REQUIRE(upload_vector(be.get(), bn, 2, &dbn).ok());
  REQUIRE(upload_vector(be.get(), cn, 4, &dcn).ok());
  const float* pa = da.as<float>();
  const float* pb = db.as<float>();
  const float* pc = dc.as<float>();
  const float* pan = dan.as<float>();
  const float* pbn = dbn.as<float>();
  const float* pcn = dcn.as<float>();

  LayerKV kv(be.get(), 2);
  REQUIRE(kv.backend() == be.get());
  REQUIRE(kv.append(pc, pcn, 2).ok());
  REQUIRE(kv.set_prefix(pa, pan, 2).ok());
  REQUIRE(kv.insert_prefix(1, pb, pbn, 1).ok());
  REQUIRE(kv.n_prefix() == 3);
  REQUIRE(kv.n_cached() == 2);
  REQUIRE(kv.n_rows() == 5);
  const std::vector<float> want = {1, 2, 5, 6, 3, 4, 7, 8, 9, 10};
  HostKV h = host_kv(kv);
  REQUIRE(h.k == want);
  for (size_t i = 0; i < want.size(); ++i) REQUIRE(h.v[i] == -want[i]);
  REQUIRE(kv.insert_prefix(4, pb, pbn, 1).code() == StatusCode::kInvalidArgument);
  REQUIRE(kv.insert_prefix(0, nullptr, nullptr, 1).code() == StatusCode::kInvalidArgument);
  REQUIRE(kv.set_prefix(nullptr, pan, 1).code() == StatusCode::kInvalidArgument);
  REQUIRE(host_kv(kv) == h);  // rejected edits change nothing
  REQUIRE(kv.erase_prefix(0, 2).ok());
  h = host_kv(kv);
  REQUIRE(h.k == std::vector<float>{3, 4, 7, 8, 9, 10});
  REQUIRE(h.v == std::vector<float>{-3, -4, -7, -8, -9, -10});
  REQUIRE(kv.erase_prefix(0, 2).code() == StatusCode::kInvalidArgument);
  // Replacing the prefix keeps the cached rows after it.
  REQUIRE(kv.set_prefix(pa, pan, 2).ok());
  h = host_kv(kv);
  REQUIRE(h.k == std::vector<float>{1, 2, 3, 4, 7, 8, 9, 10});
  REQUIRE(h.v == std::vector<float>{-1, -2, -3, -4, -7, -8, -9, -10});
  kv.truncate_cached(1);
  REQUIRE(kv.n_rows() == 3);
  REQUIRE(host_kv(kv).k == std::vector<float>{1, 2, 3, 4, 7, 8});
  // Many appends (growing the buffers) keep every row.
  for (int i = 0; i < 40; ++i) REQUIRE(kv.append(pb, pbn, 1).ok());
  h = host_kv(kv);
  REQUIRE(kv.n_cached() == 41);
  REQUIRE(h.k.size() == static_cast<size_t>(2 * 43));
  REQUIRE(std::vector<float>(h.k.begin(), h.k.begin() + 6) == std::vector<float>{1, 2, 3, 4, 7, 8});
  for (int i = 0; i < 40; ++i) {
    REQUIRE(h.k[static_cast<size_t>(6 + 2 * i)] == 5);
    REQUIRE(h.v[static_cast<size_t>(7 + 2 * i)] == -6);
  }
  kv.clear();
  REQUIRE(kv.n_rows() == 0);
  REQUIRE(kv.width() == 2);
  h = host_kv(kv);
  REQUIRE(h.k.empty());
  REQUIRE(h.v.empty());
  // An uninitialised LayerKV (no backend) refuses rows.
  LayerKV none;
  REQUIRE(none.set_prefix(pa, pan, 1).code() == StatusCode::kInvalidArgument);
}

namespace {

// Records what it is shown (activations are backend memory: downloaded through act.backend) and can fail on
// purpose before the attention or after the MLP of one layer.
class RecordingObserver : public ForwardObserver {
 public:
  explicit RecordingObserver(Backend* expected = nullptr) : expected_(expected) {}
  Status before_attention(const LayerActivations& act, LayerKV* kv) override {
    ++calls;
    layers.push_back(act.layer);
    n_before.push_back(kv->n_cached());
    const bool ok = act.backend != nullptr && (expected_ == nullptr || act.backend == expected_) &&
                    kv->backend() == act.backend && act.batch != nullptr && act.n_tokens == act.batch->n_tokens &&
                    act.a != nullptr && act.q != nullptr && act.k != nullptr && act.v != nullptr;
    backend_ok = backend_ok && ok;
    if (!ok) return Error(StatusCode::kInternal, "observer: bad activations");
    k_rows.push_back(download_floats(act.backend, act.k, act.n_tokens * kv->width()));
    a_rows.push_back(download_floats(act.backend, act.a, act.n_tokens * hidden));
    return act.layer == fail_before_at ? Error(StatusCode::kUnsupported, "refused before attention") : Status::Ok();
  }
  Status after_layer(int layer, const float*, int64_t n) override {
    after.push_back(layer);
    REQUIRE(n > 0);
    return layer == fail_at ? Error(StatusCode::kCancelled, "stop") : Status::Ok();
  }
  int calls = 0;
  int fail_at = -1;         // after_layer of this layer returns kCancelled
  int fail_before_at = -1;  // before_attention of this layer returns kUnsupported
  int64_t hidden = 0;       // row width of `a` (the model's hidden size)
  bool backend_ok = true;
  std::vector<int> layers;
  std::vector<int64_t> n_before;
  std::vector<std::vector<float>> k_rows;
  std::vector<std::vector<float>> a_rows;
  std::vector<int> after;

 private:
  Backend* expected_;
};

}  // namespace

TEST_CASE("observer sees every layer; kNone, keep_kv and selected rows", "[forward]") {
  std::mt19937 rng(6);
  auto m = make_tiny(DType::kBF16, kShapes[0]);
  const std::vector<int32_t> tokens = random_tokens(rng, 11, m->cfg.vocab_size);
  const std::vector<int32_t> pos = iota_positions(11);
  KVContext kv;
  kv.init(m->cfg, m->backend());
  RecordingObserver rec(m->backend());
  rec.hidden = m->cfg.hidden_size;
  ForwardBatch b;
  b.tokens = tokens.data();
  b.positions = pos.data();
  b.n_tokens = 11;
  ForwardOptions o;
  o.logits = LogitsMode::kNone;
  o.observer = &rec;
  ForwardWorkspace ws;
  REQUIRE(forward(m->weights(), b, &kv, o, &ws, nullptr, 0).ok());
  REQUIRE(rec.calls == 3);
  REQUIRE(rec.layers == std::vector<int>{0, 1, 2});
  REQUIRE(rec.after == std::vector<int>{0, 1, 2});
  REQUIRE(rec.backend_ok);
  for (int l = 0; l < 3; ++l) {
    REQUIRE(rec.n_before[static_cast<size_t>(l)] == 0);
    const LayerKV& lk = kv.layers[static_cast<size_t>(l)];
    REQUIRE(lk.n_cached() == 11);
    // The K rows shown to the observer are the rows appended to the cache.
    REQUIRE(host_kv(lk).k == rec.k_rows[static_cast<size_t>(l)]);
  }
  // `a` of layer 0 is input_layernorm(embedding).
  {
    const std::vector<double> emb = vals(m->w.embed_tokens);
    const int64_t hd = m->cfg.hidden_size;
    Mat x(static_cast<size_t>(11 * hd));
    for (int64_t t = 0; t < 11; ++t) {
      const int64_t row = tokens[static_cast<size_t>(t)];
      for (int64_t i = 0; i < hd; ++i) x[static_cast<size_t>(t * hd + i)] = emb[static_cast<size_t>(row * hd + i)];
    }
    ref_rmsnorm(&x, 11, hd, m->w.layers[0].input_norm, m->cfg.rms_norm_eps);
    REQUIRE(rec.a_rows[0].size() == x.size());
    REQUIRE(rel_err(rec.a_rows[0].data(), x.data(), x.size()) <= 1e-6);
  }

  // keep_kv = false: the context is left as it was, results are the same.
  ForwardOptions o2;
  o2.logits = LogitsMode::kSelected;
  const int64_t rows[] = {10, 0, 4};
  o2.logit_rows = rows;
  o2.n_logit_rows = 3;
  o2.keep_kv = false;
  KVContext empty;
  empty.init(m->cfg, m->backend());
  std::vector<float> sel(static_cast<size_t>(3 * m->cfg.vocab_size));
  REQUIRE(forward(m->weights(), b, &empty, o2, &ws, sel.data(), static_cast<int64_t>(sel.size())).ok());
  REQUIRE(empty.n_cached() == 0);
  REQUIRE(empty.segments.empty());
  const std::vector<float> full = all_logits(*m, tokens);
  for (int r = 0; r < 3; ++r) {
    REQUIRE(rel_err(sel.data() + r * m->cfg.vocab_size, full.data() + rows[r] * m->cfg.vocab_size,
                    static_cast<size_t>(m->cfg.vocab_size)) <= 1e-6);
  }
  // Small MLP sub-batches give the same result.
  o2.mlp_chunk_rows = 4;
  std::vector<float> sel2(sel.size());
  REQUIRE(forward(m->weights(), b, &empty, o2, &ws, sel2.data(), static_cast<int64_t>(sel2.size())).ok());
  REQUIRE(rel_err(sel2.data(), sel.data(), sel.size()) <= 1e-6);
}

TEST_CASE("an observer's error aborts the forward and leaves the KV context as it was", "[forward]") {
  std::mt19937 rng(16);
  auto m = make_tiny(DType::kBF16, kShapes[0]);
  const std::vector<int32_t> first = random_tokens(rng, 5, m->cfg.vocab_size);
  const std::vector<int32_t> tokens = random_tokens(rng, 11, m->cfg.vocab_size);
  KVContext kv;
  kv.init(m->cfg, m->backend());
  const std::vector<int32_t> seg_first(5, 3);
  run(*m, &kv, first, iota_positions(5), seg_first.data());
  const std::vector<HostKV> before = host_kv(kv);
  const std::vector<int32_t> seg_before = kv.segments;
  REQUIRE(kv.n_cached() == 5);

  const std::vector<int32_t> pos = iota_positions(11, 5);
  ForwardBatch b;
  b.tokens = tokens.data();
  b.positions = pos.data();
  b.n_tokens = 11;
  ForwardWorkspace ws;
  std::vector<float> logits(static_cast<size_t>(m->cfg.vocab_size));
  struct Case {
    int fail_at, fail_before_at;
    StatusCode code;
    int calls;
    std::vector<int> after;
  };
  // After layer 1's MLP (layers 0 and 1 appended rows); before layer 2's attention (the same, plus layer 2's
  // q/k/v computed); before layer 0's attention (nothing appended yet).
  const Case cases[] = {{1, -1, StatusCode::kCancelled, 2, {0, 1}},
                        {-1, 2, StatusCode::kUnsupported, 3, {0, 1}},
                        {-1, 0, StatusCode::kUnsupported, 1, {}}};
  for (const Case& cs : cases) {
    for (LogitsMode mode : {LogitsMode::kNone, LogitsMode::kLast}) {
      INFO("fail_at " << cs.fail_at << ", fail_before_at " << cs.fail_before_at << ", logits "
                      << static_cast<int>(mode));
      RecordingObserver failing(m->backend());
      failing.hidden = m->cfg.hidden_size;
      failing.fail_at = cs.fail_at;
      failing.fail_before_at = cs.fail_before_at;
      ForwardOptions o;
      o.logits = mode;
      o.observer = &failing;
      o.keep_kv = true;
      const Status s = forward(m->weights(), b, &kv, o, &ws, logits.data(), static_cast<int64_t>(logits.size()));
      REQUIRE(s.code() == cs.code);
      // Aborted: no later layer ran.
      REQUIRE(failing.calls == cs.calls);
      REQUIRE(failing.after == cs.after);
      // The new rows are gone from every layer; the old rows and segment ids are untouched.
      REQUIRE(kv.n_cached() == 5);
      for (const LayerKV& l : kv.layers) REQUIRE(l.n_cached() == 5);
      REQUIRE(kv.segments == seg_before);
      REQUIRE(host_kv(kv) == before);
    }
  }
  // The context is still usable: the same batch without the failing observer continues the sequence (a batch
  // without segment ids sees every cached row).
  std::vector<int32_t> all = first;
  all.insert(all.end(), tokens.begin(), tokens.end());
  const std::vector<float> got = run(*m, &kv, tokens, pos);
  const std::vector<float> want = all_logits(*m, all);
  REQUIRE(rel_err(got.data(), want.data() + 5 * m->cfg.vocab_size, got.size()) <= 1e-5);
  REQUIRE(kv.n_cached() == 16);
}

TEST_CASE("last_layer stops the forward after that layer", "[forward]") {
  std::mt19937 rng(17);
  auto m = make_tiny(DType::kBF16, kShapes[0]);
  const int64_t n_layers = m->cfg.num_hidden_layers;
  REQUIRE(n_layers == 3);
  const std::vector<int32_t> prior = random_tokens(rng, 4, m->cfg.vocab_size);
  const std::vector<int32_t> tokens = random_tokens(rng, 11, m->cfg.vocab_size);
  const std::vector<int32_t> pos = iota_positions(11, 4);
  ForwardBatch b;
  b.tokens = tokens.data();
  b.positions = pos.data();
  b.n_tokens = 11;
  ForwardWorkspace ws;

  // Reference: every layer, keep_kv, on a context holding `prior`.
  KVContext full_kv;
  full_kv.init(m->cfg, m->backend());
  run(*m, &full_kv, prior, iota_positions(4));
  RecordingObserver all(m->backend());
  all.hidden = m->cfg.hidden_size;
  ForwardOptions o;
  o.logits = LogitsMode::kNone;
  o.observer = &all;
  REQUIRE(forward(m->weights(), b, &full_kv, o, &ws, nullptr, 0).ok());
  REQUIRE(all.layers == std::vector<int>{0, 1, 2});
  const std::vector<HostKV> full_rows = host_kv(full_kv);
  // A context holding `prior` (its rows returned), and the options of an early stop after layer `last`
  // recorded by `rec`, keep_kv off.
  auto primed = [&](KVContext* c) {
    c->init(m->cfg, m->backend());
    run(*m, c, prior, iota_positions(4));
    return host_kv(*c);
  };
  auto early_stop = [&](RecordingObserver* rec, int last) {
    rec->hidden = m->cfg.hidden_size;
    ForwardOptions o;
    o.logits = LogitsMode::kNone;
    o.observer = rec;
    o.last_layer = last;
    o.keep_kv = false;
    return o;
  };

  for (int last = 0; last < 2; ++last) {
    INFO("last_layer " << last);
    // keep_kv = false: only layers 0..last run, with the same activations, and the context is unchanged.
    KVContext kv;
    const std::vector<HostKV> before = primed(&kv);
    RecordingObserver rec(m->backend());
    ForwardOptions ol = early_stop(&rec, last);
    REQUIRE(forward(m->weights(), b, &kv, ol, &ws, nullptr, 0).ok());
    REQUIRE(rec.calls == last + 1);
    REQUIRE(rec.after.size() == static_cast<size_t>(last + 1));
    for (int l = 0; l <= last; ++l) {
      REQUIRE(rec.after[static_cast<size_t>(l)] == l);
      REQUIRE(rec.k_rows[static_cast<size_t>(l)] == all.k_rows[static_cast<size_t>(l)]);
      REQUIRE(rec.a_rows[static_cast<size_t>(l)] == all.a_rows[static_cast<size_t>(l)]);
    }
    REQUIRE(kv.n_cached() == 4);
    REQUIRE(host_kv(kv) == before);

    // keep_kv = true: the layers that ran hold the new rows, equal to those of the full forward.
    ol.keep_kv = true;
    RecordingObserver rec2(m->backend());
    rec2.hidden = m->cfg.hidden_size;
    ol.observer = &rec2;
    REQUIRE(forward(m->weights(), b, &kv, ol, &ws, nullptr, 0).ok());
    REQUIRE(rec2.calls == last + 1);
    for (int l = 0; l <= last; ++l) {
      REQUIRE(kv.layers[static_cast<size_t>(l)].n_cached() == 15);
      REQUIRE(host_kv(kv.layers[static_cast<size_t>(l)]) == full_rows[static_cast<size_t>(l)]);
    }
  }

  // last_layer = the last layer is a full forward: logits allowed, and the same.
  std::vector<float> want(static_cast<size_t>(11 * m->cfg.vocab_size)), got(want.size());
  {
    ForwardOptions of;
    of.logits = LogitsMode::kAll;
    KVContext kv;
    kv.init(m->cfg, m->backend());
    REQUIRE(forward(m->weights(), b, &kv, of, &ws, want.data(), static_cast<int64_t>(want.size())).ok());
    of.last_layer = static_cast<int>(n_layers - 1);
    KVContext kv2;
    kv2.init(m->cfg, m->backend());
    REQUIRE(forward(m->weights(), b, &kv2, of, &ws, got.data(), static_cast<int64_t>(got.size())).ok());
    REQUIRE(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) == 0);
    REQUIRE(host_kv(kv2) == host_kv(kv));
  }

  // Out of range, or an early stop asked for logits: rejected before anything runs.
  KVContext kv;
  kv.init(m->cfg, m->backend());
  RecordingObserver never(m->backend());
  ForwardOptions bad;
  bad.observer = &never;
  bad.logits = LogitsMode::kNone;
  for (int l : {-2, static_cast<int>(n_layers), 100}) {
    bad.last_layer = l;
    REQUIRE(forward(m->weights(), b, &kv, bad, &ws, nullptr, 0).code() == StatusCode::kInvalidArgument);
  }
  bad.last_layer = 1;
  for (LogitsMode mode : {LogitsMode::kLast, LogitsMode::kAll}) {
    bad.logits = mode;
    REQUIRE(forward(m->weights(), b, &kv, bad, &ws, got.data(), static_cast<int64_t>(got.size())).code() ==
            StatusCode::kInvalidArgument);
  }
  REQUIRE(never.calls == 0);
  REQUIRE(kv.n_cached() == 0);

  // stop_before_attention: layer `last` runs up to its observer hook only (same activations as the full
  // forward there, no after_layer for it, no rows appended to it), the context is unchanged with keep_kv off.
  for (int last = 0; last < static_cast<int>(n_layers); ++last) {
    INFO("stop_before_attention at layer " << last);
    KVContext skv;
    const std::vector<HostKV> before = primed(&skv);
    RecordingObserver rec(m->backend());
    ForwardOptions os = early_stop(&rec, last);
    os.stop_before_attention = true;
    REQUIRE(forward(m->weights(), b, &skv, os, &ws, nullptr, 0).ok());
    REQUIRE(rec.calls == last + 1);
    REQUIRE(rec.after.size() == static_cast<size_t>(last));
    for (int l = 0; l <= last; ++l) {
      REQUIRE(rec.k_rows[static_cast<size_t>(l)] == all.k_rows[static_cast<size_t>(l)]);
      REQUIRE(rec.a_rows[static_cast<size_t>(l)] == all.a_rows[static_cast<size_t>(l)]);
    }
    REQUIRE(host_kv(skv) == before);
    // ... even at the model's last layer it gives no logits, and it needs a last_layer.
    os.logits = LogitsMode::kLast;
    REQUIRE(forward(m->weights(), b, &skv, os, &ws, got.data(), static_cast<int64_t>(got.size())).code() ==
            StatusCode::kInvalidArgument);
  }
  ForwardOptions no_layer;
  no_layer.logits = LogitsMode::kNone;
  no_layer.stop_before_attention = true;
  REQUIRE(forward(m->weights(), b, &kv, no_layer, &ws, nullptr, 0).code() == StatusCode::kInvalidArgument);
}

TEST_CASE("non-causal batches attend to every new token", "[forward]") {
  std::mt19937 rng(7);
  auto m = make_tiny(DType::kF32, kShapes[0]);
  const std::vector<int32_t> tokens = random_tokens(rng, 4, m->cfg.vocab_size);
  KVContext kv;
  kv.init(m->cfg, m->backend());
  const std::vector<float> bidir = run(*m, &kv, tokens, iota_positions(4), nullptr, nullptr, false);
  const Mat ref = reference_forward(*m, tokens, false);
  REQUIRE(rel_err(bidir.data(), ref.data(), ref.size()) <= 1e-5);
  const std::vector<float> causal = all_logits(*m, tokens);
  REQUIRE(rel_err(bidir.data(), causal.data(), causal.size()) > 1e-3);
}

TEST_CASE("forward validates its arguments", "[forward]") {
  auto m = make_tiny(DType::kF32, kShapes[0]);
  const int64_t vocab = m->cfg.vocab_size;
  std::vector<float> logits(static_cast<size_t>(vocab));
  const int32_t good[] = {1, 2};
  const int32_t bad[] = {1, static_cast<int32_t>(vocab)};
  const int32_t neg[] = {-1};
  REQUIRE(forward_logits(m->weights(), bad, 2, logits.data()).code() == StatusCode::kInvalidArgument);
  REQUIRE(forward_logits(m->weights(), neg, 1, logits.data()).code() == StatusCode::kInvalidArgument);
  REQUIRE(forward_logits(m->weights(), good, 0, logits.data()).code() == StatusCode::kInvalidArgument);
  REQUIRE(forward_logits(m->weights(), nullptr, 2, logits.data()).code() == StatusCode::kInvalidArgument);
  REQUIRE(forward_logits(m->weights(), good, 2, nullptr).code() == StatusCode::kInvalidArgument);

  ForwardBatch b;
  const int32_t pos[] = {0, 1};
  b.tokens = good;
  b.positions = pos;
  b.n_tokens = 2;
  ForwardOptions o;
  ForwardWorkspace ws;
  KVContext kv;  // not initialised
  REQUIRE(forward(m->weights(), b, &kv, o, &ws, logits.data(), vocab).code() == StatusCode::kInvalidArgument);
  kv.init(m->cfg, m->backend());
  REQUIRE(forward(m->weights(), b, &kv, o, &ws, logits.data(), vocab - 1).code() == StatusCode::kBufferTooSmall);
  REQUIRE(forward(m->weights(), b, nullptr, o, &ws, logits.data(), vocab).code() == StatusCode::kInvalidArgument);
  b.positions = nullptr;
  REQUIRE(forward(m->weights(), b, &kv, o, &ws, logits.data(), vocab).code() == StatusCode::kInvalidArgument);
  b.positions = pos;
  o.logits = LogitsMode::kSelected;
  const int64_t rows[] = {2};
  o.logit_rows = rows;
  o.n_logit_rows = 1;
  REQUIRE(forward(m->weights(), b, &kv, o, &ws, logits.data(), vocab).code() == StatusCode::kInvalidArgument);
  o.logits = LogitsMode::kLast;
  // Layers out of step (one row of backend memory appended to layer 1 only).
  const int64_t width = m->cfg.num_key_value_heads * m->cfg.head_dim;
  DeviceBuffer row;
  const std::vector<float> zeros(static_cast<size_t>(width), 0.0f);
  REQUIRE(upload_vector(m->backend(), zeros.data(), zeros.size(), &row).ok());
  REQUIRE(kv.layers[1].append(row.as<float>(), row.as<float>(), 1).ok());
  REQUIRE(forward(m->weights(), b, &kv, o, &ws, logits.data(), vocab).code() == StatusCode::kInvalidArgument);
  kv.clear();
  REQUIRE(forward(m->weights(), b, &kv, o, &ws, logits.data(), vocab).ok());
  // A KV context of another shape, or on another backend.
  KVContext other_shape;
  ModelConfig wide = m->cfg;
  wide.head_dim *= 2;
  other_shape.init(wide, m->backend());
  REQUIRE(forward(m->weights(), b, &other_shape, o, &ws, logits.data(), vocab).code() == StatusCode::kInvalidArgument);
  CpuBackend elsewhere;
  KVContext other_backend;
  other_backend.init(m->cfg, &elsewhere);
  REQUIRE(forward(m->weights(), b, &other_backend, o, &ws, logits.data(), vocab).code() ==
          StatusCode::kInvalidArgument);
  REQUIRE(other_backend.n_cached() == 0);
  kv.clear();

  // Weights that do not match the config are rejected once, when they are prepared.
  std::unique_ptr<DeviceWeights> dw;
  ModelWeights broken = m->w;
  broken.layers[1].k_proj.shape = {5, 5};
  REQUIRE(DeviceWeights::prepare(broken, m->cfg, m->backend(), &dw).code() == StatusCode::kShape);
  REQUIRE(dw == nullptr);
  broken = m->w;
  broken.layers.pop_back();
  REQUIRE(DeviceWeights::prepare(broken, m->cfg, m->backend(), &dw).code() == StatusCode::kShape);
  broken = m->w;
  broken.final_norm = TensorView();
  REQUIRE(DeviceWeights::prepare(broken, m->cfg, m->backend(), &dw).code() == StatusCode::kShape);
  ModelConfig odd = m->cfg;
  odd.num_key_value_heads = 3;  // 4 heads % 3 != 0
  REQUIRE(DeviceWeights::prepare(m->w, odd, m->backend(), &dw).code() == StatusCode::kConfig);
  REQUIRE(DeviceWeights::prepare(m->w, m->cfg, nullptr, &dw).code() == StatusCode::kInvalidArgument);
  // Context length (the config travels with the prepared weights).
  ModelConfig small = m->cfg;
  small.max_position_embeddings = 1;
  REQUIRE(DeviceWeights::prepare(m->w, small, m->backend(), &dw).ok());
  REQUIRE(dw->backend() == m->backend());
  REQUIRE(dw->config().max_position_embeddings == 1);
  REQUIRE(forward_logits(*dw, good, 2, logits.data()).code() == StatusCode::kContextOverflow);
  int32_t out[4];
  REQUIRE(greedy_generate(*dw, good, 1, 2, out).code() == StatusCode::kContextOverflow);
  REQUIRE(greedy_generate(m->weights(), good, 0, 2, out).code() == StatusCode::kInvalidArgument);
}

TEST_CASE("two threads run forwards on one model at once", "[forward]") {
  std::mt19937 rng(8);
  auto m = make_tiny(DType::kBF16, kShapes[0]);
  const std::vector<int32_t> t1 = random_tokens(rng, 70, m->cfg.vocab_size), t2 = random_tokens(rng, 33, m->cfg.vocab_size);
  const std::vector<float> want1 = all_logits(*m, t1), want2 = all_logits(*m, t2);
  std::vector<float> got1(want1.size()), got2(want2.size());
  Status s1, s2;
  for (int rep = 0; rep < 3; ++rep) {
    std::thread th1([&] { s1 = forward_logits(m->weights(), t1.data(), 70, got1.data(), true); });
    std::thread th2([&] { s2 = forward_logits(m->weights(), t2.data(), 33, got2.data(), true); });
    th1.join();
    th2.join();
    REQUIRE(s1.ok());
    REQUIRE(s2.ok());
    REQUIRE(got1 == want1);
    REQUIRE(got2 == want2);
  }
}

TEST_CASE("forward is the same on the scalar and the AVX2 backend", "[forward]") {
  if (!CpuBackend::cpu_has_avx2()) {
    WARN("no AVX2 on this CPU: skipped");
    return;
  }
  CpuBackend scalar(CpuBackendOptions{nullptr, CpuIsa::kScalar});
  CpuBackend avx2(CpuBackendOptions{nullptr, CpuIsa::kAvx2});
  std::mt19937 rng(9);
  auto m = make_tiny(DType::kBF16, kShapes[0]);
  const std::vector<int32_t> tokens = random_tokens(rng, 19, m->cfg.vocab_size);
  const std::vector<int32_t> pos = iota_positions(19);
  std::vector<float> out[2];
  Backend* bes[2] = {&scalar, &avx2};
  for (int i = 0; i < 2; ++i) {
    ForwardBatch b;
    b.tokens = tokens.data();
    b.positions = pos.data();
    b.n_tokens = 19;
    ForwardOptions o;
    o.logits = LogitsMode::kAll;
    const std::unique_ptr<DeviceWeights> dw = prepare_on(*m, bes[i]);
    REQUIRE(dw->backend() == bes[i]);
    KVContext kv;
    kv.init(m->cfg, bes[i]);
    ForwardWorkspace ws;
    out[i].resize(static_cast<size_t>(19 * m->cfg.vocab_size));
    REQUIRE(forward(*dw, b, &kv, o, &ws, out[i].data(), static_cast<int64_t>(out[i].size())).ok());
  }
  REQUIRE(rel_err(out[0].data(), out[1].data(), out[0].size()) <= 1e-5);
}

// ------------------------------------------------------------------------------------------------ goldens

namespace {

bool dir_exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::vector<int32_t> i32_tensor(const TensorInfo& t) {
  REQUIRE(t.dtype == DType::kI32);
  std::vector<int32_t> v(static_cast<size_t>(t.view.numel()));
  std::memcpy(v.data(), t.view.data, v.size() * 4);
  return v;
}

}  // namespace

TEST_CASE("golden logits and greedy continuations from transformers", "[forward][golden]") {
  const std::string root = MSA_TEST_DATA_DIR;
  const char* configs[] = {"tiny_tied", "tiny_untied_hd", "tiny_gqa1"};
  std::unique_ptr<Backend> be;  // the registry's (MSA_BACKEND)
  REQUIRE(create_backend(BackendParams(), &be).ok());
  CpuBackend scalar(CpuBackendOptions{nullptr, CpuIsa::kScalar});
  for (const char* name : configs) {
    const std::string golden_path = root + "/goldens/" + name + ".safetensors";
    SafetensorsSet golden;
    const Status gs = SafetensorsSet::open_file(golden_path, &golden);
    if (!gs.ok()) {
      WARN("golden file missing, skipped: " << gs.to_string());
      continue;
    }
    for (const char* variant : {"bf16", "f32"}) {
      const std::string dir = root + "/models/" + name + "_" + variant;
      if (!dir_exists(dir)) {
        WARN("tiny checkpoint missing, skipped: " << dir);
        continue;
      }
      ModelConfig cfg;
      SafetensorsSet set;
      ModelWeights w;
      Status s = load_model_config(dir, &cfg);
      INFO(dir << ": " << s.to_string());
      REQUIRE(s.ok());
      s = SafetensorsSet::open_dir(dir, &set);
      INFO(s.to_string());
      REQUIRE(s.ok());
      s = bind_weights(set, cfg, &w);
      INFO(s.to_string());
      REQUIRE(s.ok());
      std::unique_ptr<DeviceWeights> dw, dw_scalar;
      s = DeviceWeights::prepare(w, cfg, be.get(), &dw);
      INFO(s.to_string());
      REQUIRE(s.ok());

      double worst = 0.0, worst_scalar = 0.0;
      int n_seq = 0;
      for (int i = 0;; ++i) {
        const TensorInfo* tok = golden.find("seq" + std::to_string(i) + ".tokens");
        const TensorInfo* ref = golden.find("seq" + std::to_string(i) + ".logits");
        if (!tok || !ref) break;
        const std::vector<int32_t> tokens = i32_tensor(*tok);
        const int64_t n = static_cast<int64_t>(tokens.size());
        REQUIRE(ref->dtype == DType::kF32);
        REQUIRE(ref->shape == std::vector<int64_t>{n, cfg.vocab_size});
        std::vector<float> ours(static_cast<size_t>(n * cfg.vocab_size));
        s = forward_logits(*dw, tokens.data(), n, ours.data(), true);
        INFO(s.to_string());
        REQUIRE(s.ok());
        std::vector<float> want(ours.size());
        std::memcpy(want.data(), ref->view.data, want.size() * 4);
        const double err = rel_err(ours.data(), want.data(), ours.size());
        INFO(name << "_" << variant << " seq" << i << " (n = " << n << "): max|ours-ref|/max|ref| = " << err);
        CHECK(err <= 1e-4);
        worst = std::max(worst, err);
        ++n_seq;
        // The portable kernels (what a CPU without AVX2 runs) meet the same bound.
        if (CpuBackend::cpu_has_avx2()) {
          const std::vector<int32_t> pos = iota_positions(n);
          ForwardBatch b;
          b.tokens = tokens.data();
          b.positions = pos.data();
          b.n_tokens = n;
          ForwardOptions o;
          o.logits = LogitsMode::kAll;
          if (!dw_scalar) REQUIRE(DeviceWeights::prepare(w, cfg, &scalar, &dw_scalar).ok());
          KVContext kv;
          kv.init(cfg, &scalar);
          ForwardWorkspace ws;
          REQUIRE(forward(*dw_scalar, b, &kv, o, &ws, ours.data(), static_cast<int64_t>(ours.size())).ok());
          const double err_scalar = rel_err(ours.data(), want.data(), ours.size());
          INFO("scalar kernels: " << err_scalar);
          CHECK(err_scalar <= 1e-4);
          worst_scalar = std::max(worst_scalar, err_scalar);
        }
      }
      REQUIRE(n_seq > 0);

      const TensorInfo* prompt_t = golden.find("greedy.prompt");
      const TensorInfo* cont_t = golden.find("greedy.continuation");
      REQUIRE(prompt_t != nullptr);
      REQUIRE(cont_t != nullptr);
      const std::vector<int32_t> prompt = i32_tensor(*prompt_t), cont = i32_tensor(*cont_t);
      std::vector<int32_t> gen(cont.size());
      s = greedy_generate(*dw, prompt.data(), static_cast<int64_t>(prompt.size()), static_cast<int64_t>(gen.size()),
                          gen.data());
      INFO(s.to_string());
      REQUIRE(s.ok());
      CHECK(gen == cont);
      size_t same = 0;
      for (size_t i = 0; i < gen.size(); ++i) same += gen[i] == cont[i] ? 1 : 0;
      std::printf("golden %-15s %-4s: %d sequences, max|ours-ref|/max|ref| = %.3g (%s), %.3g (scalar kernels), "
                  "greedy %zu/%zu tokens equal\n",
                  name, variant, n_seq, worst, be->name(), worst_scalar, same, cont.size());
    }
  }
}
