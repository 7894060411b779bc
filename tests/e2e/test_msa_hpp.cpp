// The C++ RAII layer (include/msa/msa.hpp) used as an application would, linked against the shared
// library only: load, tokenize, encode with progress, stream, cancel, errors as msa::Error, moves.
// usage: test_msa_hpp <tests/data dir>
#include <msa/msa.hpp>

#include <cstdio>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

static int failures = 0;
#define CHECK(cond)                                                                    \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);   \
      failures++;                                                                      \
    }                                                                                  \
  } while (0)

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  try {
    msa::check_version();
    const std::string tokdir = std::string(argv[1]) + "/../../../shared/data/qwen3-tokenizer";
    msa::write_random_checkpoint("hpp_model", "micro", 3, tokdir.c_str());

    // errors carry the code and msa_last_error()
    try {
      msa::Model missing("no/such/dir");
      CHECK(false);
    } catch (const msa::Error& e) {
      CHECK(e.code() == MSA_ERR_IO || e.code() == MSA_ERR_CONFIG);
      CHECK(!e.message().empty());
      CHECK(std::string(e.what()).rfind(msa_status_string(e.code()), 0) == 0);
    }

    msa::Model model("hpp_model");
    CHECK(model.info().n_layers == 2);
    msa::TokenizerView tok = model.tokenizer();
    CHECK(static_cast<bool>(tok));
    std::vector<int32_t> ids = tok.tokenize("Hello, world! <|im_end|>");
    CHECK(!ids.empty() && ids.back() == 151645);
    CHECK(tok.detokenize(ids) == "Hello, world! <|im_end|>");
    CHECK(tok.token_to_id("<|im_end|>") == 151645);
    msa::Tokenizer own(tokdir);
    CHECK(own.tokenize("Hello, world!") == tok.tokenize("Hello, world!"));
    {
      msa::Detokenizer detok(own);  // freed before its tokenizer
      std::string streamed;
      for (int32_t id : ids) streamed += detok.push(id);
      streamed += detok.flush();
      CHECK(streamed == "Hello, world! <|im_end|>");
    }

    // a moved-from owner is empty and its destructor does nothing
    msa::Tokenizer moved = std::move(own);
    CHECK(moved.info().eos_id == 151645);
    CHECK(!own && moved);  // NOLINT(bugprone-use-after-move): the moved-from owner is empty
    msa::Tokenizer assigned(tokdir);
    assigned = std::move(moved);
    CHECK(assigned && !moved && assigned.token_to_id("<|im_end|>") == 151645);

    msa::Memory mem(model);
    const std::vector<std::string> texts = {"The capital of France is Paris.", "Mount Everest is 8849 metres tall.",
                                            "Bananas are rich in potassium."};
    // cancellation from the progress callback: an msa::Error, nothing added
    try {
      mem.add_documents(texts, [](int64_t, int64_t, int64_t, int64_t) { return false; });
      CHECK(false);
    } catch (const msa::Error& e) {
      CHECK(e.code() == MSA_ERR_CANCELLED);
    }
    CHECK(mem.stats().n_documents == 0);
    // an exception thrown in a callback reaches the caller (not through C frames)
    try {
      mem.add_documents(texts, [](int64_t, int64_t, int64_t, int64_t) -> bool { throw std::logic_error("stop"); });
      CHECK(false);
    } catch (const std::logic_error& e) {
      CHECK(std::string(e.what()) == "stop");
    }
    int progress_calls = 0;
    std::vector<uint64_t> doc_ids = mem.add_documents(texts, [&](int64_t done, int64_t total, int64_t, int64_t) {
      CHECK(done <= total);
      ++progress_calls;
      return true;
    });
    CHECK(progress_calls > 0);
    CHECK(doc_ids == (std::vector<uint64_t>{0, 1, 2}));
    CHECK(mem.stats().n_documents == 3);

    msa_generate_params gp = msa::generate_params();
    gp.top_k = 2;
    gp.max_new_tokens = 8;
    gp.temperature = 0.0f;
    gp.interleave = 0;
    std::string pieces;
    msa::Result r = msa::generate(model, &mem, "How tall is Mount Everest?", gp, [&](std::string_view p) {
      pieces += p;
      return true;
    });
    CHECK(!r.cancelled());
    CHECK(pieces == r.generated_text());
    CHECK(!r.tokens().empty() && r.tokens().size() <= 8);
    CHECK(r.n_router_layers() == 1 && r.layer_topk(0).size() == 2);
    CHECK(r.timings().prompt_tokens > 0);

    // greedy is deterministic: the same tokens again; stopping after the first piece gives a cancelled result
    int calls = 0;
    msa::Result c = msa::generate(model, &mem, "How tall is Mount Everest?", gp, [&](std::string_view) {
      return ++calls < 1;
    });
    CHECK(c.cancelled() && calls == 1);
    CHECK(c.tokens().size() <= r.tokens().size());
    msa::Result again = msa::generate(model, &mem, "How tall is Mount Everest?", gp);
    CHECK(again.tokens() == r.tokens());

    msa::Result routed = msa::route(model, mem, "Who created Python?", gp);
    CHECK(routed.layer_topk(0).size() == 2);

    // bad parameters are msa::Error with MSA_ERR_INVALID_ARGUMENT
    gp.top_k = 0;
    try {
      msa::generate(model, &mem, "q", gp);
      CHECK(false);
    } catch (const msa::Error& e) {
      CHECK(e.code() == MSA_ERR_INVALID_ARGUMENT);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "unexpected exception: %s\n", e.what());
    return 1;
  }
  if (failures) {
    std::fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("test_msa_hpp: all checks passed\n");
  return 0;
}
