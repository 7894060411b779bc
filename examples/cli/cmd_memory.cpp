// msa memory info|verify|add|rm|compact BANK: inspect and change a bank directory. info and verify need no
// model (a bank describes itself: dtype, shapes, fingerprint); add / rm / compact open the bank for --model
// (on --device).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli_util.h"
#include "commands.h"
#include "memory_util.h"

namespace {

const char* kUsage =
    "memory info BANK [--json]                         documents, chunks, bytes per tier, dtype, fingerprint\n"
    "       memory verify BANK                                full checksum pass (exit 1 naming the section)\n"
    "       memory add BANK --model DIR --docs FILE [--commit-every N]\n"
    "       memory rm BANK --model DIR ID...                  tombstone documents\n"
    "       memory compact BANK --model DIR                   rewrite without tombstones\n"
    "       (add, rm and compact also take --device cpu|cuda|cuda:N)";

struct Parsed {
  std::vector<std::string> positional;
  std::string model, docs, every = "256", device;
  bool device_given = false;
  bool json = false;
  std::string error;
};

Parsed parse(int argc, char** argv) {
  Parsed p;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= argc) {
        p.error = "option " + a + " needs a value";
      } else {
        *out = argv[++i];
      }
    };
    if (a == "--model") {
      value(&p.model);
    } else if (a == "--docs") {
      value(&p.docs);
    } else if (a == "--commit-every") {
      value(&p.every);
    } else if (a == "--device") {
      value(&p.device);
      p.device_given = true;
    } else if (a == "--json") {
      p.json = true;
    } else if (a.size() > 1 && a[0] == '-' && a[1] == '-') {
      p.error = "unknown option '" + a + "'";
    } else {
      p.positional.push_back(a);
    }
  }
  return p;
}

int info(const std::string& bank, bool verify, bool json) {
  const char* cmd = verify ? "memory verify" : "memory info";
  msa_memory_file_desc d;
  std::memset(&d, 0, sizeof d);
  d.struct_size = sizeof d;
  msa_status st = msa_memory_file_info(bank.c_str(), verify ? 1 : 0, &d);
  if (st != MSA_OK) return cli::fail(cmd, st);
  if (verify) {
    std::printf("%s: OK (%d segments, %lld documents, every checksum verified)\n", bank.c_str(), d.n_segments,
                static_cast<long long>(d.n_documents + d.n_removed));
    return 0;
  }
  char tok[24], wd[24];
  std::snprintf(tok, sizeof tok, "%016llx", static_cast<unsigned long long>(d.tokenizer_xxh64));
  std::snprintf(wd, sizeof wd, "%016llx", static_cast<unsigned long long>(d.weights_digest));
  if (json) {
    nlohmann::json j = {
        {"format_version", d.format_version}, {"generation", d.generation}, {"segments", d.n_segments},
        {"page_dtype", cli::page_dtype_name(d.page_dtype)}, {"documents", d.n_documents}, {"removed", d.n_removed},
        {"chunks_per_layer", d.n_chunks}, {"tokens", d.n_tokens}, {"routing_bytes", d.routing_bytes},
        {"content_bytes", d.content_bytes}, {"text_bytes", d.text_bytes}, {"file_bytes", d.file_bytes},
        {"checksums", "manifest, headers, tables, routing keys verified; content pages verified on read"},
        {"fingerprint",
         {{"hidden_size", d.hidden_size}, {"layers", d.n_layers}, {"heads", d.n_heads}, {"kv_heads", d.n_kv_heads},
          {"head_dim", d.head_dim}, {"router_layers", d.n_router_layers}, {"pooling_kernel_size", d.pooling_kernel_size},
          {"decouple_router", d.decouple_router != 0}, {"aux_loss_method", d.aux_loss_method},
          {"rope_theta", d.rope_theta}, {"vocab_size", d.vocab_size}, {"tokenizer_xxh64", tok},
          {"weights_digest", wd}}}};
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("bank            %s (format version %d, generation %lld, %d segments)\n", bank.c_str(),
              d.format_version, static_cast<long long>(d.generation), d.n_segments);
  std::printf("documents       %lld live, %lld removed (tombstoned)\n", static_cast<long long>(d.n_documents),
              static_cast<long long>(d.n_removed));
  std::printf("tokens          %lld; %lld chunks per router layer\n", static_cast<long long>(d.n_tokens),
              static_cast<long long>(d.n_chunks));
  std::printf("page dtype      %s\n", cli::page_dtype_name(d.page_dtype));
  std::printf("routing keys    %.3f MiB (routing tier: read into RAM at open)\n",
              static_cast<double>(d.routing_bytes) / 1048576.0);
  std::printf("content pages   %.3f MiB compressed (content tier: mapped, decompressed on use)\n",
              static_cast<double>(d.content_bytes) / 1048576.0);
  std::printf("texts           %.3f MiB; files %.3f MiB in all\n", static_cast<double>(d.text_bytes) / 1048576.0,
              static_cast<double>(d.file_bytes) / 1048576.0);
  std::printf("model           hidden %lld, %d layers, %d heads / %d kv heads x %d, %d router layers, pooling %d,\n"
              "                decouple_router %d, aux_loss_method %s, rope_theta %g, vocab %lld\n",
              static_cast<long long>(d.hidden_size), d.n_layers, d.n_heads, d.n_kv_heads, d.head_dim,
              d.n_router_layers, d.pooling_kernel_size, d.decouple_router, d.aux_loss_method, d.rope_theta,
              static_cast<long long>(d.vocab_size));
  std::printf("fingerprint     tokenizer %s, weights %s\n", tok, wd);
  std::printf("checksums       manifest, segment headers, tables and routing keys OK; content pages are checked when "
              "read (run `msa memory verify` for a full pass)\n");
  return 0;
}

}  // namespace

int cmd_memory(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: msa %s\n", kUsage);
    return 2;
  }
  const std::string sub = argv[1];
  Parsed p = parse(argc, argv);
  const std::string cmd = "memory " + sub;
  if (!p.error.empty()) return cli::usage_error(cmd.c_str(), p.error, kUsage);
  if (p.positional.empty()) return cli::usage_error(cmd.c_str(), "BANK is required", kUsage);
  const std::string bank = p.positional[0];
  if (sub == "info" || sub == "verify") {
    if (p.positional.size() != 1 || !p.model.empty() || !p.docs.empty() || p.device_given)
      return cli::usage_error(cmd.c_str(), "info/verify take only BANK (no model needed)", kUsage);
    return info(bank, sub == "verify", p.json);
  }
  if (sub != "add" && sub != "rm" && sub != "compact") {
    return cli::usage_error("memory", "unknown subcommand '" + sub + "'", kUsage);
  }
  if (p.model.empty()) return cli::usage_error(cmd.c_str(), "--model is required", kUsage);
  cli::Device dev;
  if (p.device_given)
    if (int rc = cli::device_value(cmd.c_str(), p.device, kUsage, &dev)) return rc;
  std::vector<uint64_t> ids;
  cli::DocFile docs;
  long every = 0;
  if (sub == "rm") {
    if (p.positional.size() < 2) return cli::usage_error(cmd.c_str(), "give the ids to remove", kUsage);
    for (size_t i = 1; i < p.positional.size(); ++i) {
      char* end = nullptr;
      const unsigned long long v = std::strtoull(p.positional[i].c_str(), &end, 10);
      if (p.positional[i].empty() || *end != '\0' || p.positional[i][0] == '-')
        return cli::usage_error(cmd.c_str(), "'" + p.positional[i] + "' is not a document id", kUsage);
      ids.push_back(v);
    }
  } else if (p.positional.size() != 1) {
    return cli::usage_error(cmd.c_str(), "unexpected argument '" + p.positional[1] + "'", kUsage);
  }
  if (sub == "add") {
    if (p.docs.empty()) return cli::usage_error(cmd.c_str(), "--docs is required", kUsage);
    char* end = nullptr;
    every = std::strtol(p.every.c_str(), &end, 10);
    if (*end != '\0' || every < 1) return cli::usage_error(cmd.c_str(), "--commit-every must be >= 1", kUsage);
    std::string err;
    if (!cli::read_documents(p.docs, &docs, &err)) {
      std::fprintf(stderr, "msa %s: %s\n", cmd.c_str(), err.c_str());
      return 1;
    }
  }
  msa_model* model = nullptr;
  if (int rc = cli::load_model(cmd.c_str(), p.model, dev, true, &model)) return rc;
  msa_memory* mem = nullptr;
  msa_status st = MSA_OK;
  int rc = cli::open_memory(cmd.c_str(), model, bank, &mem, false);
  if (rc == 0) {
    if (sub == "add") {
      rc = cli::encode_into(cmd.c_str(), mem, docs, static_cast<size_t>(every), false);
    } else if (sub == "rm") {
      st = msa_memory_remove_documents(mem, ids.data(), ids.size());
      if (st != MSA_OK) rc = cli::fail(cmd.c_str(), st);
    } else {
      st = msa_memory_compact(mem);
      if (st != MSA_OK) rc = cli::fail(cmd.c_str(), st);
    }
  }
  if (rc == 0) {
    msa_memory_usage u;
    u.struct_size = sizeof u;
    if (msa_memory_stats(mem, &u) == MSA_OK)
      std::printf("%s: %lld documents, %lld removed, %lld chunks/layer\n", bank.c_str(),
                  static_cast<long long>(u.n_documents), static_cast<long long>(u.n_removed),
                  static_cast<long long>(u.n_chunks));
  }
  msa_memory_free(mem);
  msa_model_free(model);
  return rc;
}
