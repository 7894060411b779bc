// msa encode: a documents file -> a bank directory, committed every N documents, resumable.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <sys/stat.h>
#include <vector>

#include "cli_util.h"
#include "commands.h"
#include "memory_util.h"

namespace {

bool parse_dtype(const std::string& s, int32_t* out) {
  if (s == "f32") *out = MSA_PAGE_F32;
  else if (s == "bf16") *out = MSA_PAGE_BF16;
  else if (s == "int8") *out = MSA_PAGE_INT8;
  else return false;
  return true;
}

bool exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

}  // namespace

int cmd_encode(int argc, char** argv) {
  const char* usage =
      "encode --model DIR --docs FILE --out BANK [--dtype f32|bf16|int8] [--commit-every N] [--batch-tokens N] "
      "[--quiet] [--device cpu|cuda|cuda:N]";
  cli::Args a(argc, argv);
  const std::string model_dir = a.get("--model"), docs_path = a.get("--docs"), out = a.get("--out");
  const std::string dtype_s = a.get("--dtype"), every_s = a.get("--commit-every", "256");
  const std::string batch_s = a.get("--batch-tokens", "4096");
  const bool quiet = a.has("--quiet");
  cli::Device dev;
  if (int rc = cli::device_option("encode", a, usage, &dev)) return rc;
  if (int rc = cli::check_args("encode", a, usage)) return rc;
  if (model_dir.empty() || docs_path.empty() || out.empty())
    return cli::usage_error("encode", "--model, --docs and --out are required", usage);
  int32_t dtype = MSA_PAGE_BF16;
  if (!dtype_s.empty() && !parse_dtype(dtype_s, &dtype))
    return cli::usage_error("encode", "--dtype must be f32, bf16 or int8", usage);
  char* end = nullptr;
  const long every = std::strtol(every_s.c_str(), &end, 10);
  if (*end != '\0' || every < 1) return cli::usage_error("encode", "--commit-every must be an integer >= 1", usage);
  const long batch = std::strtol(batch_s.c_str(), &end, 10);
  if (*end != '\0' || batch < 1) return cli::usage_error("encode", "--batch-tokens must be an integer >= 1", usage);

  cli::DocFile docs;
  std::string err;
  if (!cli::read_documents(docs_path, &docs, &err)) {
    std::fprintf(stderr, "msa encode: %s\n", err.c_str());
    return 1;
  }
  msa_model* model = nullptr;
  if (int rc = cli::load_model("encode", model_dir, dev, true, &model)) return rc;
  msa_memory* mem = nullptr;
  msa_status st = MSA_OK;
  int rc = 0;
  msa_memory_params mp;
  msa_memory_params_init(&mp);
  mp.batch_tokens = static_cast<int32_t>(batch);
  mp.page_dtype = dtype;
  if (exists(out + "/MANIFEST")) {
    // Resume: the bank holds everything committed so far.
    st = msa_memory_open(model, out.c_str(), &mp, &mem);
    if (st != MSA_OK) {
      rc = cli::fail("encode", st);
    } else {
      msa_memory_usage u;
      u.struct_size = sizeof u;
      msa_memory_stats(mem, &u);
      if (!dtype_s.empty() && u.page_dtype != dtype) {
        std::fprintf(stderr, "msa encode: %s holds %s pages; --dtype %s differs (the dtype is fixed at creation)\n",
                     out.c_str(), cli::page_dtype_name(u.page_dtype), dtype_s.c_str());
        rc = 1;
      } else if (!quiet) {
        std::fprintf(stderr, "msa encode: resuming %s (%lld documents committed)\n", out.c_str(),
                     static_cast<long long>(u.n_documents));
      }
    }
  } else {
    st = msa_memory_create(model, &mp, &mem);
    if (st == MSA_OK) st = msa_memory_save(mem, out.c_str());  // attach: every batch below commits a segment
    if (st != MSA_OK) rc = cli::fail("encode", st);
  }
  if (rc == 0) rc = cli::encode_into("encode", mem, docs, static_cast<size_t>(every), quiet);
  if (rc == 0 && !quiet) {
    msa_memory_usage u;
    u.struct_size = sizeof u;
    if (msa_memory_stats(mem, &u) == MSA_OK)
      std::fprintf(stderr, "msa encode: %s: %lld documents, %lld tokens, %lld chunks/layer, %s pages\n", out.c_str(),
                   static_cast<long long>(u.n_documents), static_cast<long long>(u.n_tokens),
                   static_cast<long long>(u.n_chunks), cli::page_dtype_name(u.page_dtype));
  }
  msa_memory_free(mem);
  msa_model_free(model);
  return rc;
}
