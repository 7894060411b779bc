// msa generate / msa route: encode a documents file into memory, then answer (or only route) a prompt.
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli_util.h"
#include "commands.h"
#include "memory_util.h"

namespace {

struct Common {
  std::string model, docs, memory, prompt;
  msa_generate_params params;
  cli::Device device;
  bool json = false;
};

bool parse_int(const std::string& s, long lo, long hi, long* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  long v = std::strtol(s.c_str(), &end, 10);
  if (*end != '\0' || v < lo || v > hi) return false;
  *out = v;
  return true;
}

// Parses the options shared by generate and route; returns 0 or an exit code.
int parse_common(const char* cmd, cli::Args& a, const char* usage, bool generate, Common* c) {
  c->model = a.get("--model");
  c->docs = a.get("--docs");
  c->memory = a.get("--memory");
  c->prompt = a.get("--prompt");
  std::string top_k = a.get("--top-k", "16");
  std::string max_new = generate ? a.get("--max-new-tokens", "256") : "1";
  std::string temp = generate ? a.get("--temperature") : "";
  std::string seed = generate ? a.get("--seed", "0") : "0";
  std::string inter = generate ? a.get("--interleave", "on") : "off";
  std::string rounds = generate ? a.get("--max-rounds", "4") : "4";
  c->json = a.has("--json");
  if (int rc = cli::device_option(cmd, a, usage, &c->device)) return rc;
  if (int rc = cli::check_args(cmd, a, usage)) return rc;
  if (c->model.empty() || c->prompt.empty()) return cli::usage_error(cmd, "--model and --prompt are required", usage);
  if (!c->docs.empty() && !c->memory.empty())
    return cli::usage_error(cmd, "--docs and --memory exclude each other", usage);
  msa_generate_params_init(&c->params);
  long v = 0;
  if (!parse_int(top_k, 0, 1 << 30, &v)) return cli::usage_error(cmd, "--top-k must be an integer", usage);
  c->params.top_k = static_cast<int32_t>(v);
  if (!parse_int(max_new, 0, 1 << 30, &v)) return cli::usage_error(cmd, "--max-new-tokens must be an integer", usage);
  c->params.max_new_tokens = static_cast<int32_t>(v);
  if (!parse_int(rounds, 0, 1 << 20, &v)) return cli::usage_error(cmd, "--max-rounds must be an integer", usage);
  c->params.max_rounds = static_cast<int32_t>(v);
  if (!temp.empty()) {
    char* end = nullptr;
    c->params.temperature = std::strtof(temp.c_str(), &end);
    if (*end != '\0') return cli::usage_error(cmd, "--temperature must be a number", usage);
  }
  char* end = nullptr;
  c->params.seed = std::strtoull(seed.c_str(), &end, 10);
  if (seed.empty() || *end != '\0') return cli::usage_error(cmd, "--seed must be an integer", usage);
  if (inter != "on" && inter != "off") return cli::usage_error(cmd, "--interleave must be on or off", usage);
  c->params.interleave = inter == "on";
  return 0;
}

int stream_piece(const char* piece, size_t len, void*) {
  std::fwrite(piece, 1, len, stdout);
  std::fflush(stdout);
  return 0;
}

// Where the model runs: backend, device and the bytes of weights in device memory (msa_model_info).
nlohmann::json model_json(const msa_model* m) {
  msa_model_desc d;
  d.struct_size = sizeof d;
  if (msa_model_info(m, &d) != MSA_OK) return nullptr;
  return {{"backend", d.backend}, {"device", d.device}, {"device_weight_bytes", d.device_weight_bytes}};
}

nlohmann::json layers_json(const msa_result* r) {
  nlohmann::json layers = nlohmann::json::array();
  for (int32_t s = 0; s < msa_result_n_router_layers(r); ++s) {
    const uint64_t* ids = nullptr;
    const float* scores = nullptr;
    int64_t n = msa_result_layer_topk(r, s, &ids, &scores);
    nlohmann::json l = {{"layer", msa_result_router_layer(r, s)}, {"ids", nlohmann::json::array()},
                        {"scores", nlohmann::json::array()}};
    for (int64_t i = 0; i < n; ++i) {
      l["ids"].push_back(ids[i]);
      l["scores"].push_back(scores[i]);
    }
    layers.push_back(l);
  }
  return layers;
}

// Per router layer of the first round: the retrieved document ids with their scores, best first.
void print_layers(const msa_result* r) {
  for (int32_t s = 0; s < msa_result_n_router_layers(r); ++s) {
    const uint64_t* ids = nullptr;
    const float* scores = nullptr;
    int64_t n = msa_result_layer_topk(r, s, &ids, &scores);
    std::printf("layer %d retrieved:", msa_result_router_layer(r, s));
    for (int64_t i = 0; i < n; ++i)
      std::printf(" [%llu] %.3f", static_cast<unsigned long long>(ids[i]), static_cast<double>(scores[i]));
    std::printf("\n");
  }
}

// Loads the model and, when --docs is given, builds the memory (--memory: opens the bank). Returns 0 or an
// exit code.
int setup(const char* cmd, const Common& c, msa_model** model, msa_memory** mem) {
  if (int rc = cli::load_model(cmd, c.model, c.device, true, model)) return rc;
  if (!c.memory.empty()) return cli::open_memory(cmd, *model, c.memory, mem, c.json);
  if (c.docs.empty()) return 0;
  cli::DocFile docs;
  std::string err;
  if (!cli::read_documents(c.docs, &docs, &err)) {
    std::fprintf(stderr, "msa %s: %s\n", cmd, err.c_str());
    return 1;
  }
  return cli::build_memory(cmd, *model, docs, mem, false);
}

}  // namespace

int cmd_generate(int argc, char** argv) {
  const char* usage =
      "generate --model DIR [--docs FILE | --memory BANK] --prompt TEXT [--top-k N] [--max-new-tokens N] [--temperature T --seed S]\n"
      "                    [--interleave on|off] [--max-rounds N] [--json] [--device cpu|cuda|cuda:N]";
  cli::Args a(argc, argv);
  Common c;
  if (int rc = parse_common("generate", a, usage, true, &c)) return rc;
  msa_model* model = nullptr;
  msa_memory* mem = nullptr;
  int rc = setup("generate", c, &model, &mem);
  if (rc) {
    msa_model_free(model);
    return rc;
  }
  msa_result* r = nullptr;
  msa_status st = msa_generate(model, mem, c.prompt.c_str(), &c.params, c.json ? nullptr : stream_piece, nullptr, &r);
  if (st != MSA_OK) {
    rc = cli::fail("generate", st);
  } else {
    msa_timings t;
    t.struct_size = sizeof t;
    msa_result_timings(r, &t);
    msa_memory_usage u;
    u.struct_size = sizeof u;
    bool have_mem = mem && msa_memory_stats(mem, &u) == MSA_OK;
    if (c.json) {
      nlohmann::json out = {{"answer", msa_result_text(r)},
                            {"generated_text", msa_result_generated_text(r)},
                            {"transcript", msa_result_transcript(r)},
                            {"stop_reason", msa_result_stop_reason(r)},
                            {"layers", layers_json(r)},
                            {"model", model_json(model)},
                            {"rounds", nlohmann::json::array()},
                            {"timings",
                             {{"prefill_ms", t.prefill_ms},
                              {"ttft_ms", t.ttft_ms},
                              {"decode_tokens_per_s", t.decode_tokens_per_s},
                              {"total_ms", t.total_ms},
                              {"prompt_tokens", t.prompt_tokens},
                              {"generated_tokens", t.generated_tokens}}}};
      const int32_t* ids = nullptr;
      int64_t n = msa_result_tokens(r, &ids);
      out["tokens"] = std::vector<int32_t>(ids, ids + n);
      for (int32_t i = 0; i < msa_result_n_rounds(r); ++i) {
        const uint64_t* d = nullptr;
        int64_t nd = msa_result_round_documents(r, i, &d);
        out["rounds"].push_back({{"documents_read", std::vector<uint64_t>(d, d + (nd > 0 ? nd : 0))}});
      }
      if (have_mem)
        out["memory"] = {{"documents", u.n_documents}, {"chunks", u.n_chunks}, {"tokens", u.n_tokens},
                         {"removed", u.n_removed}, {"routing_bytes", u.routing_bytes},
                         {"routing_device_bytes", u.routing_device_bytes}, {"content_bytes", u.content_bytes},
                         {"content_file_bytes", u.content_file_bytes}, {"text_bytes", u.text_bytes}};
      std::printf("%s\n", out.dump(2).c_str());
    } else {
      std::printf("\n\n");
      print_layers(r);
      for (int32_t i = 0; i < msa_result_n_rounds(r); ++i) {
        const uint64_t* d = nullptr;
        int64_t nd = msa_result_round_documents(r, i, &d);
        std::printf("round %d: documents read:", i + 1);
        for (int64_t j = 0; j < nd; ++j) std::printf(" [%llu]", static_cast<unsigned long long>(d[j]));
        std::printf("%s\n", nd > 0 ? "" : " none");
      }
      if (have_mem)
        std::printf("memory: %lld documents, %lld tokens, %lld chunks/layer; routing tier (routing keys) %.2f MiB, "
                    "content tier (K/V pages) %.2f MiB\n",
                    static_cast<long long>(u.n_documents), static_cast<long long>(u.n_tokens),
                    static_cast<long long>(u.n_chunks), static_cast<double>(u.routing_bytes) / 1048576.0,
                    static_cast<double>(u.content_bytes) / 1048576.0);
      std::printf("stop: %s; prompt %lld tokens, prefill %.1f ms, time to first token %.1f ms, decode %.1f tokens/s\n",
                  msa_result_stop_reason(r), static_cast<long long>(t.prompt_tokens), t.prefill_ms, t.ttft_ms,
                  t.decode_tokens_per_s);
    }
  }
  msa_result_free(r);
  msa_memory_free(mem);
  msa_model_free(model);
  return rc;
}

int cmd_route(int argc, char** argv) {
  const char* usage =
      "route --model DIR (--docs FILE | --memory BANK) --prompt TEXT [--top-k N] [--json] [--device cpu|cuda|cuda:N]";
  cli::Args a(argc, argv);
  Common c;
  if (int rc = parse_common("route", a, usage, false, &c)) return rc;
  if (c.docs.empty() && c.memory.empty()) return cli::usage_error("route", "--docs or --memory is required", usage);
  msa_model* model = nullptr;
  msa_memory* mem = nullptr;
  int rc = setup("route", c, &model, &mem);
  msa_result* r = nullptr;
  if (!rc) {
    msa_status st = msa_route(model, mem, c.prompt.c_str(), &c.params, &r);
    if (st != MSA_OK) {
      rc = cli::fail("route", st);
    } else if (c.json) {
      std::printf("%s\n", nlohmann::json({{"layers", layers_json(r)}, {"model", model_json(model)}}).dump(2).c_str());
    } else {
      print_layers(r);
    }
  }
  msa_result_free(r);
  msa_memory_free(mem);
  msa_model_free(model);
  return rc;
}
