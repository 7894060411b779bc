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

#include "backend/cpu/cpu_backend.h"
#include "core/dtype.h"
#include "model/config.h"
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

// A random model held in memory (no files): config, weight views and their storage.
struct TinyModel {
  ModelConfig cfg;
  ModelWeights w;
  std::vector<std::unique_ptr<OwnedTensor>> store;
  std::mt19937 rng{0};
  DType dtype = DType::kF32;

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
  return m;
}

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
  const Status s = forward_logits(m.w, m.cfg, tokens.data(), static_cast<int64_t>(tokens.size()), out.data(), true);
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
  const Status s = forward(m.w, m.cfg, b, kv, o, &ws, out.data(), static_cast<int64_t>(out.size()));
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
        REQUIRE(forward_logits(m->w, m->cfg, tokens.data(), n, last.data(), false).ok());
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
    kv.init(m->cfg);
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
    // Rolling back and re-running the tail gives the same logits.
    kv.truncate_cached(20);
    std::vector<int32_t> tail(tokens.begin() + 20, tokens.end());
    const std::vector<float> again = run(*m, &kv, tail, iota_positions(3, 20));
    REQUIRE(rel_err(again.data(), full.data() + 20 * s.vocab, again.size()) <= 1e-5);
  }
}

TEST_CASE("greedy_generate equals argmax of full recomputes", "[forward]") {
  std::mt19937 rng(3);
  auto m = make_tiny(DType::kF32, kShapes[0]);
  std::vector<int32_t> seq = random_tokens(rng, 5, kShapes[0].vocab);
  std::vector<int32_t> gen(12);
  REQUIRE(greedy_generate(m->w, m->cfg, seq.data(), 5, 12, gen.data()).ok());
  std::vector<float> last(static_cast<size_t>(m->cfg.vocab_size));
  for (int i = 0; i < 12; ++i) {
    REQUIRE(forward_logits(m->w, m->cfg, seq.data(), static_cast<int64_t>(seq.size()), last.data()).ok());
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
    kv.init(m->cfg);
    const std::vector<float> packed = run(*m, &kv, tokens, pos, seg.data());
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
    kv2.init(m->cfg);
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
  }
}

namespace {

// Copies every layer's cached K/V rows of `src` into the prefix of `dst`.
void copy_cache_to_prefix(const KVContext& src, KVContext* dst) {
  for (size_t l = 0; l < src.layers.size(); ++l) {
    const LayerKV& s = src.layers[l];
    REQUIRE(dst->layers[l].set_prefix(s.k_row(s.n_prefix()), s.v_row(s.n_prefix()), s.n_cached()).ok());
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
    return kv->insert_prefix(have, s.k_row(s.n_prefix() + have), s.v_row(s.n_prefix() + have),
                             s.n_cached() - have);
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
    first.init(m->cfg);
    run(*m, &first, p, iota_positions(6));
    // (1) Prefix set before the call.
    KVContext ctx;
    ctx.init(m->cfg);
    copy_cache_to_prefix(first, &ctx);
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
    ctx2.init(m->cfg);
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
  LayerKV kv(2);
  const float a[] = {1, 2, 3, 4}, b[] = {5, 6}, c[] = {7, 8, 9, 10};
  kv.append(c, c, 2, nullptr);
  REQUIRE(kv.set_prefix(a, a, 2).ok());
  REQUIRE(kv.insert_prefix(1, b, b, 1).ok());
  REQUIRE(kv.n_prefix() == 3);
  REQUIRE(kv.n_cached() == 2);
  const float want[] = {1, 2, 5, 6, 3, 4, 7, 8, 9, 10};
  for (int i = 0; i < 10; ++i) REQUIRE(kv.k()[i] == want[i]);
  REQUIRE(kv.segments()[1] == 0);
  REQUIRE(kv.insert_prefix(4, b, b, 1).code() == StatusCode::kInvalidArgument);
  REQUIRE(kv.erase_prefix(0, 2).ok());
  REQUIRE(kv.k()[0] == 3);
  REQUIRE(kv.erase_prefix(0, 2).code() == StatusCode::kInvalidArgument);
  kv.truncate_cached(1);
  REQUIRE(kv.n_rows() == 2);
  kv.clear();
  REQUIRE(kv.n_rows() == 0);
  REQUIRE(kv.width() == 2);
}

namespace {

// Records what it is shown and checks it against the layer's state.
class RecordingObserver : public ForwardObserver {
 public:
  Status before_attention(const LayerActivations& act, LayerKV* kv) override {
    ++calls;
    n_before.push_back(kv->n_cached());
    k_rows.emplace_back(act.k, act.k + act.n_tokens * kv->width());
    a_first.push_back(act.a[0]);
    backend_ok = backend_ok && act.backend != nullptr && act.batch != nullptr && act.q != nullptr && act.v != nullptr;
    return Status::Ok();
  }
  Status after_layer(int layer, const float*, int64_t n) override {
    after.push_back(layer);
    REQUIRE(n > 0);
    return layer == fail_at ? Error(StatusCode::kCancelled, "stop") : Status::Ok();
  }
  int calls = 0;
  int fail_at = -1;
  bool backend_ok = true;
  std::vector<int64_t> n_before;
  std::vector<std::vector<float>> k_rows;
  std::vector<float> a_first;
  std::vector<int> after;
};

}  // namespace

TEST_CASE("observer sees every layer; kNone, keep_kv and selected rows", "[forward]") {
  std::mt19937 rng(6);
  auto m = make_tiny(DType::kBF16, kShapes[0]);
  const std::vector<int32_t> tokens = random_tokens(rng, 11, m->cfg.vocab_size);
  const std::vector<int32_t> pos = iota_positions(11);
  KVContext kv;
  kv.init(m->cfg);
  RecordingObserver rec;
  ForwardBatch b;
  b.tokens = tokens.data();
  b.positions = pos.data();
  b.n_tokens = 11;
  ForwardOptions o;
  o.logits = LogitsMode::kNone;
  o.observer = &rec;
  ForwardWorkspace ws;
  REQUIRE(forward(m->w, m->cfg, b, &kv, o, &ws, nullptr, 0).ok());
  REQUIRE(rec.calls == 3);
  REQUIRE(rec.after == std::vector<int>{0, 1, 2});
  REQUIRE(rec.backend_ok);
  for (int l = 0; l < 3; ++l) {
    REQUIRE(rec.n_before[static_cast<size_t>(l)] == 0);
    const LayerKV& lk = kv.layers[static_cast<size_t>(l)];
    REQUIRE(lk.n_cached() == 11);
    REQUIRE(std::equal(rec.k_rows[static_cast<size_t>(l)].begin(), rec.k_rows[static_cast<size_t>(l)].end(), lk.k()));
  }

  // keep_kv = false: the context is left as it was, results are the same.
  ForwardOptions o2;
  o2.logits = LogitsMode::kSelected;
  const int64_t rows[] = {10, 0, 4};
  o2.logit_rows = rows;
  o2.n_logit_rows = 3;
  o2.keep_kv = false;
  KVContext empty;
  empty.init(m->cfg);
  std::vector<float> sel(static_cast<size_t>(3 * m->cfg.vocab_size));
  REQUIRE(forward(m->w, m->cfg, b, &empty, o2, &ws, sel.data(), static_cast<int64_t>(sel.size())).ok());
  REQUIRE(empty.n_cached() == 0);
  const std::vector<float> full = all_logits(*m, tokens);
  for (int r = 0; r < 3; ++r) {
    REQUIRE(rel_err(sel.data() + r * m->cfg.vocab_size, full.data() + rows[r] * m->cfg.vocab_size,
                    static_cast<size_t>(m->cfg.vocab_size)) <= 1e-6);
  }
  // Small MLP sub-batches give the same result.
  o2.mlp_chunk_rows = 4;
  std::vector<float> sel2(sel.size());
  REQUIRE(forward(m->w, m->cfg, b, &empty, o2, &ws, sel2.data(), static_cast<int64_t>(sel2.size())).ok());
  REQUIRE(rel_err(sel2.data(), sel.data(), sel.size()) <= 1e-6);

  // An observer error aborts the forward and rolls back the new rows.
  RecordingObserver failing;
  failing.fail_at = 1;
  o.observer = &failing;
  const int64_t before = kv.n_cached();
  REQUIRE(forward(m->w, m->cfg, b, &kv, o, &ws, nullptr, 0).code() == StatusCode::kCancelled);
  REQUIRE(kv.n_cached() == before);
  for (const LayerKV& l : kv.layers) REQUIRE(l.n_cached() == before);
}

TEST_CASE("non-causal batches attend to every new token", "[forward]") {
  std::mt19937 rng(7);
  auto m = make_tiny(DType::kF32, kShapes[0]);
  const std::vector<int32_t> tokens = random_tokens(rng, 4, m->cfg.vocab_size);
  KVContext kv;
  kv.init(m->cfg);
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
  REQUIRE(forward_logits(m->w, m->cfg, bad, 2, logits.data()).code() == StatusCode::kInvalidArgument);
  REQUIRE(forward_logits(m->w, m->cfg, neg, 1, logits.data()).code() == StatusCode::kInvalidArgument);
  REQUIRE(forward_logits(m->w, m->cfg, good, 0, logits.data()).code() == StatusCode::kInvalidArgument);
  REQUIRE(forward_logits(m->w, m->cfg, nullptr, 2, logits.data()).code() == StatusCode::kInvalidArgument);
  REQUIRE(forward_logits(m->w, m->cfg, good, 2, nullptr).code() == StatusCode::kInvalidArgument);

  ForwardBatch b;
  const int32_t pos[] = {0, 1};
  b.tokens = good;
  b.positions = pos;
  b.n_tokens = 2;
  ForwardOptions o;
  ForwardWorkspace ws;
  KVContext kv;  // not initialised
  REQUIRE(forward(m->w, m->cfg, b, &kv, o, &ws, logits.data(), vocab).code() == StatusCode::kInvalidArgument);
  kv.init(m->cfg);
  REQUIRE(forward(m->w, m->cfg, b, &kv, o, &ws, logits.data(), vocab - 1).code() == StatusCode::kBufferTooSmall);
  REQUIRE(forward(m->w, m->cfg, b, nullptr, o, &ws, logits.data(), vocab).code() == StatusCode::kInvalidArgument);
  b.positions = nullptr;
  REQUIRE(forward(m->w, m->cfg, b, &kv, o, &ws, logits.data(), vocab).code() == StatusCode::kInvalidArgument);
  b.positions = pos;
  o.logits = LogitsMode::kSelected;
  const int64_t rows[] = {2};
  o.logit_rows = rows;
  o.n_logit_rows = 1;
  REQUIRE(forward(m->w, m->cfg, b, &kv, o, &ws, logits.data(), vocab).code() == StatusCode::kInvalidArgument);
  o.logits = LogitsMode::kLast;
  kv.layers[1].append(logits.data(), logits.data(), 1, nullptr);  // layers out of step
  REQUIRE(forward(m->w, m->cfg, b, &kv, o, &ws, logits.data(), vocab).code() == StatusCode::kInvalidArgument);
  kv.clear();
  // Weights that do not match the config.
  ModelWeights broken = m->w;
  broken.layers[1].k_proj.shape = {5, 5};
  REQUIRE(forward(broken, m->cfg, b, &kv, o, &ws, logits.data(), vocab).code() == StatusCode::kShape);
  broken = m->w;
  broken.layers.pop_back();
  REQUIRE(forward(broken, m->cfg, b, &kv, o, &ws, logits.data(), vocab).code() == StatusCode::kShape);
  // Context length.
  ModelConfig small = m->cfg;
  small.max_position_embeddings = 1;
  REQUIRE(forward_logits(m->w, small, good, 2, logits.data()).code() == StatusCode::kContextOverflow);
  int32_t out[4];
  REQUIRE(greedy_generate(m->w, small, good, 1, 2, out).code() == StatusCode::kContextOverflow);
  REQUIRE(greedy_generate(m->w, m->cfg, good, 0, 2, out).code() == StatusCode::kInvalidArgument);
}

TEST_CASE("two threads run forwards on one model at once", "[forward]") {
  std::mt19937 rng(8);
  auto m = make_tiny(DType::kBF16, kShapes[0]);
  const std::vector<int32_t> t1 = random_tokens(rng, 70, m->cfg.vocab_size), t2 = random_tokens(rng, 33, m->cfg.vocab_size);
  const std::vector<float> want1 = all_logits(*m, t1), want2 = all_logits(*m, t2);
  std::vector<float> got1(want1.size()), got2(want2.size());
  Status s1, s2;
  for (int rep = 0; rep < 3; ++rep) {
    std::thread th1([&] { s1 = forward_logits(m->w, m->cfg, t1.data(), 70, got1.data(), true); });
    std::thread th2([&] { s2 = forward_logits(m->w, m->cfg, t2.data(), 33, got2.data(), true); });
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
    o.backend = bes[i];
    KVContext kv;
    kv.init(m->cfg);
    ForwardWorkspace ws;
    out[i].resize(static_cast<size_t>(19 * m->cfg.vocab_size));
    REQUIRE(forward(m->w, m->cfg, b, &kv, o, &ws, out[i].data(), static_cast<int64_t>(out[i].size())).ok());
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
        s = forward_logits(w, cfg, tokens.data(), n, ours.data(), true);
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
          o.backend = &scalar;
          KVContext kv;
          kv.init(cfg);
          ForwardWorkspace ws;
          REQUIRE(forward(w, cfg, b, &kv, o, &ws, ours.data(), static_cast<int64_t>(ours.size())).ok());
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
      s = greedy_generate(w, cfg, prompt.data(), static_cast<int64_t>(prompt.size()), static_cast<int64_t>(gen.size()),
                          gen.data());
      INFO(s.to_string());
      REQUIRE(s.ok());
      CHECK(gen == cont);
      size_t same = 0;
      for (size_t i = 0; i < gen.size(); ++i) same += gen[i] == cont[i] ? 1 : 0;
      std::printf("golden %-15s %-4s: %d sequences, max|ours-ref|/max|ref| = %.3g (%s), %.3g (scalar kernels), "
                  "greedy %zu/%zu tokens equal\n",
                  name, variant, n_seq, worst, default_backend()->name(), worst_scalar, same, cont.size());
    }
  }
}
