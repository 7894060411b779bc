// Tokenizer throughput, single thread: encode of a ~10 MB mixed corpus (whole text and line by line),
// one-shot and streaming decode, and load time. The peer (Hugging Face tokenizers on the same corpus,
// same run) and the ratio: benchmarks/run_tokenizer_bench.sh. Figures: docs/PERFORMANCE.md.
//
//   bench_tokenizer --tokenizer=PATH [--corpus=FILE] [google-benchmark flags]
// PATH defaults to $MSA_TOKENIZER_JSON; without --corpus a synthetic mixed corpus of 10 MB is used.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace {

std::unique_ptr<msa::Tokenizer> g_tok;
std::string g_path;
std::string g_corpus;
std::vector<std::string_view> g_lines;
std::vector<int32_t> g_ids;

std::string synthetic_corpus(size_t bytes) {
  static const char* parts[] = {
      "The quick brown fox jumps over the lazy dog. It's 10:45 and we'll see 3.14159 apples.\n",
      "def f(x):\n    return [i * i for i in range(x) if i % 2 == 0]  # squares\n",
      "记忆稀疏注意力机制可以扩展到一亿个词元。東京タワーは333メートルです。안녕하세요.\n",
      "Привет, мир! مرحبا بالعالم שלום עולם Γειά σου Κόσμε नमस्ते दुनिया\n",
      "emoji 👨‍👩‍👧‍👦 🇺🇸 👍🏽 and numbers 1234567890 1,234,567.89\n",
      "<|im_start|>user\nWhat is MSA?<|im_end|>\n",
  };
  std::string s;
  unsigned k = 12345;
  while (s.size() < bytes) {
    k = k * 1103515245u + 12345u;
    s += parts[(k >> 16) % (sizeof parts / sizeof parts[0])];
    s += std::to_string(k % 100000);
    s += ' ';
  }
  return s;
}

void BM_EncodeWhole(benchmark::State& st) {
  std::vector<int32_t> ids;
  for (auto _ : st) {
    ids.clear();
    if (!g_tok->encode(g_corpus, &ids).ok()) st.SkipWithError("encode failed");
    benchmark::DoNotOptimize(ids.data());
  }
  st.SetBytesProcessed(static_cast<int64_t>(st.iterations() * g_corpus.size()));
  st.counters["ids"] = static_cast<double>(ids.size());
}

void BM_EncodeLines(benchmark::State& st) {
  std::vector<int32_t> ids;
  size_t n = 0;
  for (auto _ : st) {
    n = 0;
    for (std::string_view line : g_lines) {
      ids.clear();
      if (!g_tok->encode(line, &ids).ok()) st.SkipWithError("encode failed");
      n += ids.size();
    }
    benchmark::DoNotOptimize(n);
  }
  st.SetBytesProcessed(static_cast<int64_t>(st.iterations() * g_corpus.size()));
  st.counters["ids"] = static_cast<double>(n);
}

void BM_Decode(benchmark::State& st) {
  std::string text;
  for (auto _ : st) {
    text.clear();
    if (!g_tok->decode(g_ids.data(), g_ids.size(), false, &text).ok()) st.SkipWithError("decode failed");
    benchmark::DoNotOptimize(text.data());
  }
  st.SetBytesProcessed(static_cast<int64_t>(st.iterations() * text.size()));
}

void BM_StreamingDecode(benchmark::State& st) {
  std::string text;
  for (auto _ : st) {
    text.clear();
    msa::StreamingDecoder d(*g_tok);
    for (int32_t id : g_ids)
      if (!d.push(id, &text).ok()) st.SkipWithError("push failed");
    d.flush(&text);
    benchmark::DoNotOptimize(text.data());
  }
  st.SetBytesProcessed(static_cast<int64_t>(st.iterations() * text.size()));
}

void BM_Load(benchmark::State& st) {
  for (auto _ : st) {
    std::unique_ptr<msa::Tokenizer> t;
    if (!msa::Tokenizer::load(g_path, &t).ok()) st.SkipWithError("load failed");
  }
}

}  // namespace

BENCHMARK(BM_EncodeWhole)->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK(BM_EncodeLines)->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK(BM_Decode)->Unit(benchmark::kMillisecond)->Iterations(5);
BENCHMARK(BM_StreamingDecode)->Unit(benchmark::kMillisecond)->Iterations(5);
BENCHMARK(BM_Load)->Unit(benchmark::kMillisecond)->Iterations(3);

int main(int argc, char** argv) {
  const char* env = std::getenv("MSA_TOKENIZER_JSON");
  g_path = env ? env : "";
  std::string corpus_path;
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], "--tokenizer=", 12) == 0) {
      g_path = argv[i] + 12;
    } else if (std::strncmp(argv[i], "--corpus=", 9) == 0) {
      corpus_path = argv[i] + 9;
    } else {
      rest.push_back(argv[i]);
    }
  }
  if (g_path.empty()) {
    std::fprintf(stderr, "bench_tokenizer: give --tokenizer=PATH (or MSA_TOKENIZER_JSON)\n");
    return 2;
  }
  msa::Status s = msa::Tokenizer::load(g_path, &g_tok);
  if (!s.ok()) {
    std::fprintf(stderr, "bench_tokenizer: %s\n", s.to_string().c_str());
    return 1;
  }
  if (corpus_path.empty()) {
    g_corpus = synthetic_corpus(10'000'000);
  } else {
    std::ifstream f(corpus_path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    g_corpus = ss.str();
    if (g_corpus.empty()) {
      std::fprintf(stderr, "bench_tokenizer: cannot read %s\n", corpus_path.c_str());
      return 1;
    }
  }
  // Lines with their line ends, as Python's str.splitlines(keepends=True) for \n.
  size_t b = 0;
  for (size_t i = 0; i < g_corpus.size(); ++i)
    if (g_corpus[i] == '\n') {
      g_lines.emplace_back(g_corpus.data() + b, i + 1 - b);
      b = i + 1;
    }
  if (b < g_corpus.size()) g_lines.emplace_back(g_corpus.data() + b, g_corpus.size() - b);
  // Warm-up (as the peer's): fills the per-thread piece cache; the ids feed the decode benchmarks.
  if (!g_tok->encode(g_corpus, &g_ids).ok()) return 1;
  std::fprintf(stderr, "bench_tokenizer: corpus %.2f MB, %zu ids, regex JIT %s\n", g_corpus.size() / 1e6,
               g_ids.size(), g_tok->regex_jit() ? "on" : "off");
  int n = static_cast<int>(rest.size());
  benchmark::Initialize(&n, rest.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
