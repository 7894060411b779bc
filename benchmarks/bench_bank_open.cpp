// Opening memory banks from disk (docs/FORMAT.md, figures in docs/PERFORMANCE.md).
//
//   BM_Open/<bank>/<verify>/<cold>
//     bank 0: "tiny-1M"    1,000,000 tokens for the tiny preset's shapes (4 layers, router layers 2-3, 2 kv heads
//                          x 32, pooling 64), bf16 pages, built through MemoryBank::add (random pooled vectors,
//                          1,000-token documents) and MemoryBank::save;
//     bank 1: "msa4b-int8" MSA-4B shapes (36 layers, 18 router layers, 8 kv heads x 128, pooling 64), int8 pages,
//                          MSA_BENCH_4B_TOKENS tokens (default 10,000,000) of random keys and pages, written
//                          segment by segment with bankfmt::write_segment (1M tokens per segment; the whole bank
//                          never sits in RAM) and a MANIFEST.
//     verify 0: lazy (routing keys + tables at open, content pages on first read); 1: every content frame too.
//     cold 1: the bank's pages are dropped from the page cache before each open (posix_fadvise DONTNEED on the
//             fsync'ed files: the closest to a cold disk read without root); 0: warm page cache.
//   Time = MemoryBank::open only (the model fingerprint, ~10-40 ms for hashing tokenizer.json, is not included).
//
// Banks are built once into $MSA_BENCH_BANK_DIR (default /tmp/msa_bench_banks) and reused by later runs.
// Run: build/<dir>/benchmarks/bench_bank_open [--benchmark_filter=BM_Open/0/]
#include <benchmark/benchmark.h>
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/file_map.h"
#include "core/thread_pool.h"
#include "engine/encoder.h"
#include "memory/bank_format.h"
#include "memory/memory_bank.h"
#include "memory/page_codec.h"
#include "model/init_model.h"
#include "model/model.h"

namespace {

using msa::ModelConfig;
using msa::PageDType;

struct Shape {
  const char* name;
  int64_t layers, heads, kv_heads, head_dim, pooling;
  int64_t router_first;
  PageDType dtype;
};

const Shape kShapes[] = {
    {"tiny-1M", 4, 4, 2, 32, 64, 2, PageDType::kBF16},
    {"msa4b-int8", 36, 32, 8, 128, 64, 18, PageDType::kInt8},
};

ModelConfig config_of(const Shape& s) {
  ModelConfig c;
  c.model_type = "msa";
  c.hidden_size = s.heads * s.head_dim;
  c.num_hidden_layers = s.layers;
  c.num_attention_heads = s.heads;
  c.num_key_value_heads = s.kv_heads;
  c.head_dim = s.head_dim;
  c.msa.present = true;
  for (int64_t l = s.router_first; l < s.layers; ++l) c.msa.router_layers.push_back(static_cast<int>(l));
  c.msa.pooling_kernel_size = static_cast<int>(s.pooling);
  return c;
}

int64_t tokens_of(int shape) {
  if (shape == 0) return 1000000;
  const char* e = std::getenv("MSA_BENCH_4B_TOKENS");
  return e ? std::atoll(e) : 10000000;
}

std::string bank_dir(int shape) {
  const char* e = std::getenv("MSA_BENCH_BANK_DIR");
  return std::string(e ? e : "/tmp/msa_bench_banks") + "/" + kShapes[shape].name + "-" +
         std::to_string(tokens_of(shape));
}

// xorshift64*: fast, deterministic.
struct Rng {
  uint64_t s;
  uint64_t next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545F4914F6CDD1Dull;
  }
  float uniform() { return static_cast<float>(next() >> 40) / static_cast<float>(1 << 24) * 2.0f - 1.0f; }
  void bytes(uint8_t* p, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      const uint64_t v = next();
      std::memcpy(p + i, &v, 8);
    }
    for (; i < n; ++i) p[i] = static_cast<uint8_t>(next());
  }
};

constexpr int64_t kDocTokens = 1000;

std::vector<std::vector<float>> template_of(const ModelConfig& c, Rng* rng) {
  std::vector<std::vector<float>> t(static_cast<size_t>(c.num_hidden_layers),
                                    std::vector<float>(static_cast<size_t>(3 * c.num_key_value_heads * c.head_dim)));
  for (auto& v : t)
    for (float& x : v) x = rng->uniform();
  return t;
}

// tiny: through the in-RAM API (add + save).
void build_tiny(const std::string& dir) {
  const ModelConfig c = config_of(kShapes[0]);
  Rng rng{42};
  std::unique_ptr<msa::MemoryBank> bank;
  msa::Status s = msa::MemoryBank::create(c, template_of(c, &rng), template_of(c, &rng), &bank, kShapes[0].dtype);
  if (!s.ok()) throw std::runtime_error(s.to_string());
  const int64_t width = c.num_key_value_heads * c.head_dim, n_docs = tokens_of(0) / kDocTokens;
  const int64_t chunks = (kDocTokens + c.msa.pooling_kernel_size - 1) / c.msa.pooling_kernel_size;
  for (int64_t b = 0; b < n_docs; b += 100) {
    std::vector<msa::DocumentRecord> docs;
    std::vector<msa::PooledDocument> pooled;
    for (int64_t i = b; i < std::min(n_docs, b + 100); ++i) {
      msa::DocumentRecord d;
      d.id = static_cast<uint64_t>(i);
      d.text = "synthetic document " + std::to_string(i) + std::string(3000, 'x');
      d.n_tokens = kDocTokens;
      msa::PooledDocument p;
      p.n_tokens = kDocTokens;
      p.n_chunks = chunks;
      for (size_t l = 0; l < c.msa.router_layers.size(); ++l) {
        std::vector<float> v(static_cast<size_t>(chunks * width));
        for (float& x : v) x = rng.uniform();
        p.k.push_back(v);
        for (float& x : v) x = rng.uniform();
        p.v.push_back(v);
        for (float& x : v) x = rng.uniform();
        p.rk.push_back(v);
      }
      docs.push_back(std::move(d));
      pooled.push_back(std::move(p));
    }
    s = bank->add(std::move(docs), std::move(pooled));
    if (!s.ok()) throw std::runtime_error(s.to_string());
  }
  s = bank->save(dir);
  if (!s.ok()) throw std::runtime_error(s.to_string());
}

// msa4b: streamed segments of random int8 rows (scales 0.01) and random int8 pages.
void build_4b(const std::string& dir) {
  const Shape& sh = kShapes[1];
  const ModelConfig c = config_of(sh);
  Rng rng{7};
  msa::Status s = msa::bankfmt::make_dirs(dir);
  if (!s.ok()) throw std::runtime_error(s.to_string());
  const int64_t width = sh.kv_heads * sh.head_dim;
  const int64_t chunks_per_doc = (kDocTokens + sh.pooling - 1) / sh.pooling;
  const int64_t n_docs = tokens_of(1) / kDocTokens, per_segment = 1000;
  const int L = static_cast<int>(c.msa.router_layers.size());
  msa::bankfmt::Manifest m;
  m.generation = 1;
  m.fp.num_hidden_layers = static_cast<uint64_t>(sh.layers);
  m.fp.hidden_size = static_cast<uint64_t>(c.hidden_size);
  m.fp.num_attention_heads = static_cast<uint64_t>(sh.heads);
  m.fp.num_key_value_heads = static_cast<uint64_t>(sh.kv_heads);
  m.fp.head_dim = static_cast<uint64_t>(sh.head_dim);
  m.fp.pooling_kernel_size = static_cast<uint64_t>(sh.pooling);
  m.fp.n_router_layers = static_cast<uint64_t>(L);
  m.fp.router_layers_xxh64 = msa::router_layers_xxh64(c.msa.router_layers);
  m.fp.page_dtype = static_cast<uint64_t>(sh.dtype);
  m.fp.template_len = 3;
  std::snprintf(m.fp.aux_loss_method, sizeof m.fp.aux_loss_method, "INFONCE");
  const auto tk = template_of(c, &rng), tv = template_of(c, &rng);
  for (size_t l = 0; l < tk.size(); ++l) {
    m.template_kv.insert(m.template_kv.end(), tk[l].begin(), tk[l].end());
    m.template_kv.insert(m.template_kv.end(), tv[l].begin(), tv[l].end());
  }
  const std::string text(4000, 'x');
  for (int64_t seg = 0; seg * per_segment < n_docs; ++seg) {
    msa::bankfmt::SegmentSource src;
    src.dtype = sh.dtype;
    src.n_kv_heads = sh.kv_heads;
    src.head_dim = sh.head_dim;
    src.pooling = sh.pooling;
    src.n_router_layers = L;
    src.zstd_level = 1;
    const int64_t d0 = seg * per_segment, d1 = std::min(n_docs, d0 + per_segment);
    for (int64_t d = d0; d < d1; ++d) {
      msa::bankfmt::SegmentDocIn in;
      in.id = static_cast<uint64_t>(d);
      in.n_tokens = kDocTokens;
      in.n_chunks = static_cast<uint64_t>(chunks_per_doc);
      in.text = text;
      src.docs.push_back(in);
    }
    const size_t n_chunks = static_cast<size_t>((d1 - d0) * chunks_per_doc);
    src.routing = [&](int, std::vector<uint8_t>* rows, std::vector<float>* scales) {
      rows->resize(n_chunks * static_cast<size_t>(width));
      rng.bytes(rows->data(), rows->size());
      scales->assign(n_chunks * static_cast<size_t>(sh.kv_heads), 0.01f);
      return msa::Status::Ok();
    };
    src.content = [&](int, size_t, msa::bankfmt::FrameIn* f) {
      const size_t rows = static_cast<size_t>(chunks_per_doc);
      const size_t rb = rows * static_cast<size_t>(width), sb = rows * static_cast<size_t>(sh.kv_heads) * 4;
      f->raw.resize(2 * (rb + sb));
      rng.bytes(f->raw.data(), rb);
      std::vector<float> sc(rows * static_cast<size_t>(sh.kv_heads), 0.01f);
      std::memcpy(f->raw.data() + rb, sc.data(), sb);
      rng.bytes(f->raw.data() + rb + sb, rb);
      std::memcpy(f->raw.data() + 2 * rb + sb, sc.data(), sb);
      return msa::Status::Ok();
    };
    msa::bankfmt::SegmentRef ref;
    ref.name = msa::bankfmt::segment_file_name(static_cast<uint64_t>(seg + 1));
    s = msa::bankfmt::write_segment(dir + "/" + ref.name, static_cast<uint64_t>(seg + 1), src, &ref, nullptr);
    if (!s.ok()) throw std::runtime_error(s.to_string());
    ref.name = msa::bankfmt::segment_file_name(static_cast<uint64_t>(seg + 1));
    m.segments.push_back(ref);
  }
  s = msa::bankfmt::write_manifest(dir, m);
  if (!s.ok()) throw std::runtime_error(s.to_string());
}

const std::string& ensure_bank(int shape) {
  static std::string dirs[2];
  if (!dirs[shape].empty()) return dirs[shape];
  const std::string dir = bank_dir(shape);
  msa::BankFiles bf;
  if (!msa::read_bank_files(dir, false, &bf).ok()) {
    const auto t0 = std::chrono::steady_clock::now();
    std::fprintf(stderr, "building %s ...\n", dir.c_str());
    if (shape == 0) build_tiny(dir); else build_4b(dir);
    std::fprintf(stderr, "built %s in %.1f s\n", dir.c_str(),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  dirs[shape] = dir;
  return dirs[shape];
}

void drop_cache(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    const int fd = ::open((dir + "/" + e->d_name).c_str(), O_RDONLY);
    if (fd < 0) continue;
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
  ::closedir(d);
}

void BM_Open(benchmark::State& state) {
  const int shape = static_cast<int>(state.range(0));
  const bool verify = state.range(1) != 0, cold = state.range(2) != 0;
  const std::string& dir = ensure_bank(shape);
  const ModelConfig c = config_of(kShapes[shape]);
  msa::BankOpenOptions o;
  o.verify_content = verify;
  int64_t routing = 0, file = 0;
  for (auto _ : state) {
    if (cold) drop_cache(dir);
    const auto t0 = std::chrono::steady_clock::now();
    std::unique_ptr<msa::MemoryBank> bank;
    const msa::Status s = msa::MemoryBank::open(dir, c, nullptr, o, &bank);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!s.ok()) {
      state.SkipWithError(s.to_string().c_str());
      return;
    }
    state.SetIterationTime(secs);
    const msa::MemoryStats st = bank->stats();
    routing = st.routing_bytes;
    file = st.content_file_bytes;
    state.counters["tokens"] = static_cast<double>(st.n_tokens);
  }
  state.counters["routing_MiB"] = static_cast<double>(routing) / 1048576.0;
  state.counters["content_MiB"] = static_cast<double>(file) / 1048576.0;
  state.SetLabel(std::string(kShapes[shape].name) + (verify ? " verify-all" : " lazy") + (cold ? " cold" : " warm"));
}

// Peer: the bandwidth floor of a lazy open — pread the same number of bytes as the bank's routing keys from
// its segment files into one buffer (what any loader must move into the RAM index) and xxh64 them (what any
// verifying loader must hash). BM_Open / BM_ReadFloor of the same bank and cache state is the open's overhead
// over moving its bytes. Args: bank, cold.
void BM_ReadFloor(benchmark::State& state) {
  const int shape = static_cast<int>(state.range(0));
  const bool cold = state.range(1) != 0;
  const std::string& dir = ensure_bank(shape);
  std::unique_ptr<msa::MemoryBank> bank;
  msa::Status s = msa::MemoryBank::open(dir, config_of(kShapes[shape]), nullptr, msa::BankOpenOptions(), &bank);
  if (!s.ok()) {
    state.SkipWithError(s.to_string().c_str());
    return;
  }
  const size_t want = static_cast<size_t>(bank->stats().routing_bytes);
  bank.reset();
  std::vector<std::string> files;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      const std::string n = e->d_name;
      if (n.size() > 7 && n.compare(n.size() - 7, 7, ".msaseg") == 0) files.push_back(dir + "/" + n);
    }
    ::closedir(d);
  }
  std::sort(files.begin(), files.end());
  std::vector<unsigned char> buf(want);
  uint64_t sink = 0;
  for (auto _ : state) {
    if (cold) drop_cache(dir);
    const auto t0 = std::chrono::steady_clock::now();
    size_t got = 0;
    for (const std::string& f : files) {
      const int fd = ::open(f.c_str(), O_RDONLY);
      if (fd < 0) continue;
      off_t at = 0;
      while (got < want) {
        const ssize_t r = ::pread(fd, buf.data() + got, std::min<size_t>(want - got, size_t{1} << 22), at);
        if (r <= 0) break;
        got += static_cast<size_t>(r);
        at += static_cast<off_t>(r);
      }
      ::close(fd);
      if (got >= want) break;
    }
    sink ^= XXH64(buf.data(), got, 0);
    state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  benchmark::DoNotOptimize(sink);
  state.counters["MiB"] = static_cast<double>(want) / 1048576.0;
  state.SetLabel(std::string(kShapes[shape].name) + " routing-key bytes, pread + xxh64" + (cold ? " cold" : " warm"));
}
BENCHMARK(BM_ReadFloor)->Args({0, 0})->Args({0, 1})->Args({1, 0})->Args({1, 1})->UseManualTime()
    ->Unit(benchmark::kMillisecond)->Iterations(3);

// Bank `shape` (built on first use) opened lazily; null after SkipWithError.
std::unique_ptr<msa::MemoryBank> open_lazily(benchmark::State& state, int shape) {
  std::unique_ptr<msa::MemoryBank> bank;
  const msa::Status s =
      msa::MemoryBank::open(ensure_bank(shape), config_of(kShapes[shape]), nullptr, msa::BankOpenOptions(), &bank);
  if (!s.ok()) {
    state.SkipWithError(s.to_string().c_str());
    bank.reset();
  }
  return bank;
}

// The lazy gather: read_pages (verify + decompress + decode to f32) of 16 documents of one router layer, as one
// routed layer of a query does. Args: bank.
void BM_Gather16(benchmark::State& state) {
  const int shape = static_cast<int>(state.range(0));
  std::unique_ptr<msa::MemoryBank> bank = open_lazily(state, shape);
  if (bank == nullptr) return;
  Rng rng{99};
  std::vector<float> k, v;
  int64_t bytes = 0;
  for (auto _ : state) {
    for (int i = 0; i < 16; ++i) {
      const int64_t d = static_cast<int64_t>(rng.next() % static_cast<uint64_t>(bank->n_documents()));
      const size_t n = static_cast<size_t>(bank->document(d).n_chunks * bank->width());
      k.resize(n);
      v.resize(n);
      const msa::Status r = bank->read_pages(0, d, k.data(), v.data());
      if (!r.ok()) {
        state.SkipWithError(r.to_string().c_str());
        return;
      }
      bytes += static_cast<int64_t>(2 * n * sizeof(float));
    }
  }
  state.SetBytesProcessed(bytes);
  state.SetLabel(std::string(kShapes[shape].name) + ": 16 documents, f32 output");
}
BENCHMARK(BM_Gather16)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);

// What a routed layer of a query stages: MemoryBank::stage_pages of 16 random documents (verify + decompress the
// raw pages into one staging buffer, no decode), serially (threads = 1) or spread over a pool. Args: bank, threads.
// The ratio of the two rows is the parallel speed-up of the gather (Session passes the backend's pool).
void BM_Stage16(benchmark::State& state) {
  const int shape = static_cast<int>(state.range(0));
  const int threads = static_cast<int>(state.range(1));
  std::unique_ptr<msa::MemoryBank> bank = open_lazily(state, shape);
  if (bank == nullptr) return;
  msa::ThreadPool pool(threads);
  Rng rng{99};
  std::vector<uint8_t> staging;
  std::vector<int64_t> docs(16);
  int64_t bytes = 0;
  for (auto _ : state) {
    for (int64_t& d : docs) d = static_cast<int64_t>(rng.next() % static_cast<uint64_t>(bank->n_documents()));
    msa::StagedPagesLayout l;
    msa::Status r = bank->staged_layout(docs.data(), docs.size(), &l);
    if (r.ok() && staging.size() < l.bytes) staging.resize(l.bytes);
    if (r.ok()) r = bank->stage_pages(0, docs.data(), docs.size(), staging.data(), staging.size(), &l, &pool);
    if (!r.ok()) {
      state.SkipWithError(r.to_string().c_str());
      return;
    }
    bytes += static_cast<int64_t>(l.bytes);
  }
  state.SetBytesProcessed(bytes);
  state.SetLabel(std::string(kShapes[shape].name) + ": 16 documents, raw pages, " + std::to_string(pool.size()) +
                 " thread(s)");
}
BENCHMARK(BM_Stage16)
    ->Args({0, 1})
    ->Args({0, 2})
    ->Args({1, 1})
    ->Args({1, 2})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// The MSA-4B bank is opened lazily only (a verify-all pass reads and decompresses every page: see FORMAT.md).
BENCHMARK(BM_Open)
    ->Args({0, 0, 0})
    ->Args({0, 0, 1})
    ->Args({0, 1, 0})
    ->Args({0, 1, 1})
    ->Args({1, 0, 0})
    ->Args({1, 0, 1})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->Iterations(3);

// --compression: real pooled K/V of the tiny preset (random weights, real text: the paragraphs of
// docs/ARCHITECTURE.md and the spec) saved in every dtype; prints raw / zstd / shuffle+zstd sizes and bytes per
// memory token. Usage: bench_bank_open --compression [N_DOCS]
int measure_compression(int n_docs) {
  const std::string dir = bank_dir(0) + "-compression";
  msa::InitModelOptions o;
  o.preset = "tiny";
  o.seed = 1;
  o.tokenizer_dir = MSA_SOURCE_DIR "/../shared/data/qwen3-tokenizer";
  o.out_dir = dir + "/model";
  msa::Status s = msa::init_model(o);
  if (!s.ok()) throw std::runtime_error(s.to_string());
  std::unique_ptr<msa::Model> model;
  s = msa::Model::load(o.out_dir, msa::ModelLoadOptions(), &model);
  if (!s.ok()) throw std::runtime_error(s.to_string());
  std::vector<std::string> texts;
  for (const char* f : {MSA_SOURCE_DIR "/../shared/docs/MSA_SPEC.md", MSA_SOURCE_DIR "/docs/ARCHITECTURE.md"}) {
    std::string all;
    if (!msa::read_file(f, &all).ok()) continue;
    size_t at = 0;
    while (at < all.size() && static_cast<int>(texts.size()) < n_docs) {
      size_t end = all.find("\n\n", at);
      if (end == std::string::npos) end = all.size();
      if (end - at > 200) texts.push_back(all.substr(at, end - at));
      at = end + 2;
    }
  }
  std::vector<std::string_view> views(texts.begin(), texts.end());
  std::printf("%zu documents\n", texts.size());
  std::printf("dtype  tokens  raw_content  zstd  shuffle+zstd  stored  frames_shuffled  routing_B/token  "
              "content_B/token(stored)\n");
  for (PageDType t : {PageDType::kF32, PageDType::kBF16, PageDType::kInt8}) {
    std::unique_ptr<msa::MemoryBank> bank;
    s = msa::create_memory_bank(*model, nullptr, &bank, t);
    if (!s.ok()) throw std::runtime_error(s.to_string());
    msa::Encoder enc(*model);
    s = enc.add_documents(bank.get(), views);
    if (!s.ok()) throw std::runtime_error(s.to_string());
    msa::bankfmt::WriteStats ws;
    s = bank->save(dir + "/" + msa::page_dtype_name(t), &ws);
    if (!s.ok()) throw std::runtime_error(s.to_string());
    const msa::MemoryStats st = bank->stats();
    const double tok = static_cast<double>(st.n_tokens);
    std::printf("%-5s  %lld  %llu  %llu  %llu  %llu  %llu/%llu  %.2f  %.2f\n", msa::page_dtype_name(t),
                static_cast<long long>(st.n_tokens), static_cast<unsigned long long>(ws.raw_content_bytes),
                static_cast<unsigned long long>(ws.plain_zstd_bytes),
                static_cast<unsigned long long>(ws.shuffled_zstd_bytes),
                static_cast<unsigned long long>(ws.stored_content_bytes),
                static_cast<unsigned long long>(ws.frames_shuffled), static_cast<unsigned long long>(ws.frames),
                static_cast<double>(st.routing_bytes) / tok, static_cast<double>(ws.stored_content_bytes) / tok);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "--compression") == 0) {
    return measure_compression(argc >= 3 ? std::atoi(argv[2]) : 300);
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
