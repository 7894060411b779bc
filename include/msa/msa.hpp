// libmsa C++ wrappers: header-only RAII classes over the C API of <msa/msa.h>. They add no ABI of their
// own (every call goes through the exported msa_* functions), so code using them links the same
// libmsa.so.<major> as C code and survives the same library upgrades.
//
//  - Ownership: Model, Tokenizer, Detokenizer, Memory and Result own one C handle each (unique ownership:
//    movable, not copyable; the destructor calls the matching msa_*_free). TokenizerView is a borrowed,
//    non-owning handle (a model's tokenizer) valid while its owner lives. A Memory keeps a pointer to its
//    model: destroy the Memory first (declare the Model first).
//  - Errors: a failing call throws msa::Error, carrying the msa_status code and msa_last_error()'s message.
//    msa::generate is the exception for cancellation: a callback that stops generation gives a Result whose
//    cancelled() is true (the C call's MSA_ERR_CANCELLED), holding what was generated so far.
//  - Callbacks are std::function. An exception thrown by a callback stops the C call (it is never thrown
//    through C frames) and is rethrown to the caller when the C call has returned.
//  - Thread-safety: as the C functions (see msa.h); a wrapper object adds no shared state.
//
// Requires C++17.
#ifndef MSA_MSA_HPP
#define MSA_MSA_HPP

#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "msa.h"

namespace msa {

// A failed libmsa call: code() is the C status, what() is "MSA_ERR_...: <msa_last_error()>".
class Error : public std::runtime_error {
 public:
  Error(msa_status code, const std::string& message)
      : std::runtime_error(std::string(msa_status_string(code)) + ": " + message), code_(code), message_(message) {}
  msa_status code() const noexcept { return code_; }
  // msa_last_error() of the failed call (without the code name).
  const std::string& message() const noexcept { return message_; }

 private:
  msa_status code_;
  std::string message_;
};

// Throws msa::Error when `status` is not MSA_OK.
inline void check(msa_status status) {
  if (status != MSA_OK) throw Error(status, msa_last_error());
}

// Throws msa::Error(MSA_ERR_UNSUPPORTED) when the loaded library does not serve this header's version.
inline void check_version() {
  if (!MSA_CHECK_VERSION())
    throw Error(MSA_ERR_UNSUPPORTED, std::string("libmsa ") + msa_version() + " cannot serve code compiled against " +
                                         std::to_string(MSA_VERSION_MAJOR) + "." + std::to_string(MSA_VERSION_MINOR) +
                                         "." + std::to_string(MSA_VERSION_PATCH));
}

inline std::string version() { return msa_version(); }

namespace detail {
// Owns one C handle, released with Free. Movable, not copyable.
template <typename T, void (*Free)(T*)>
class Handle {
 public:
  Handle() noexcept = default;
  explicit Handle(T* p) noexcept : p_(p) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      p_ = std::exchange(o.p_, nullptr);
    }
    return *this;
  }
  ~Handle() { reset(); }
  void reset() noexcept {
    if (p_) Free(p_);
    p_ = nullptr;
  }
  T* get() const noexcept { return p_; }
  T* release() noexcept { return std::exchange(p_, nullptr); }

 private:
  T* p_ = nullptr;
};

// Calls a libmsa text-output function twice when needed (size query, then fill) and returns the text.
template <typename F>
std::string text_out(F&& call) {
  std::string s(64, '\0');
  size_t len = 0;
  msa_status st = call(&s[0], s.size(), &len);
  if (st == MSA_ERR_BUFFER_TOO_SMALL) {
    s.assign(len, '\0');
    st = call(s.empty() ? nullptr : &s[0], s.size(), &len);
  }
  check(st);
  s.resize(len);
  return s;
}

template <typename F>
std::vector<int32_t> ids_out(F&& call) {
  std::vector<int32_t> ids(256);
  size_t n = 0;
  msa_status st = call(ids.data(), ids.size(), &n);
  if (st == MSA_ERR_BUFFER_TOO_SMALL) {
    ids.resize(n);
    st = call(ids.data(), ids.size(), &n);
  }
  check(st);
  ids.resize(n);
  return ids;
}
}  // namespace detail

// A borrowed tokenizer (Model::tokenizer()) or the base of an owned one. Every method is thread-safe.
class TokenizerView {
 public:
  TokenizerView() noexcept = default;
  explicit TokenizerView(const msa_tokenizer* t) noexcept : t_(t) {}
  const msa_tokenizer* get() const noexcept { return t_; }
  explicit operator bool() const noexcept { return t_ != nullptr; }

  msa_tokenizer_desc info() const {
    msa_tokenizer_desc d{};
    d.struct_size = sizeof d;
    check(msa_tokenizer_info(t_, &d));
    return d;
  }
  std::vector<int32_t> tokenize(std::string_view text, bool add_special = false) const {
    return detail::ids_out([&](int32_t* out, size_t cap, size_t* n) {
      return msa_tokenizer_tokenize(t_, text.data(), text.size(), add_special ? 1 : 0, out, cap, n);
    });
  }
  std::string detokenize(const std::vector<int32_t>& ids, bool skip_special = false) const {
    return detail::text_out([&](char* out, size_t cap, size_t* len) {
      return msa_tokenizer_detokenize(t_, ids.data(), ids.size(), skip_special ? 1 : 0, out, cap, len);
    });
  }
  // The raw bytes of one token (not necessarily valid UTF-8).
  std::string token_to_piece(int32_t id) const {
    return detail::text_out(
        [&](char* out, size_t cap, size_t* len) { return msa_tokenizer_token_to_piece(t_, id, out, cap, len); });
  }
  int32_t token_to_id(std::string_view token) const {
    int32_t id = -1;
    check(msa_tokenizer_token_to_id(t_, token.data(), token.size(), &id));
    return id;
  }

 protected:
  const msa_tokenizer* t_ = nullptr;
};

// A tokenizer loaded from tokenizer.json (or a directory holding it); owns its handle.
class Tokenizer : public TokenizerView {
 public:
  explicit Tokenizer(const std::string& tokenizer_json_path) {
    msa_tokenizer* t = nullptr;
    check(msa_tokenizer_load(tokenizer_json_path.c_str(), &t));
    h_ = Owned(t);
    t_ = t;
  }
  Tokenizer(Tokenizer&& o) noexcept : TokenizerView(std::exchange(o.t_, nullptr)), h_(std::move(o.h_)) {}
  Tokenizer& operator=(Tokenizer&& o) noexcept {
    if (this != &o) {
      h_ = std::move(o.h_);
      t_ = std::exchange(o.t_, nullptr);
    }
    return *this;
  }

 private:
  using Owned = detail::Handle<msa_tokenizer, &msa_tokenizer_free>;
  Owned h_;
};

// Streaming detokenizer: push ids one at a time, get whole UTF-8 characters back. Not thread-safe.
class Detokenizer {
 public:
  explicit Detokenizer(TokenizerView tokenizer, bool skip_special = false) {
    msa_detokenizer* d = nullptr;
    check(msa_detokenizer_create(tokenizer.get(), skip_special ? 1 : 0, &d));
    h_ = Owned(d);
  }
  std::string push(int32_t id) {
    return detail::text_out(
        [&](char* out, size_t cap, size_t* len) { return msa_detokenizer_push(h_.get(), id, out, cap, len); });
  }
  std::string flush() {
    return detail::text_out(
        [&](char* out, size_t cap, size_t* len) { return msa_detokenizer_flush(h_.get(), out, cap, len); });
  }
  msa_detokenizer* get() const noexcept { return h_.get(); }

 private:
  using Owned = detail::Handle<msa_detokenizer, &msa_detokenizer_free>;
  Owned h_;
};

// Default parameters, filled by the library (change fields, then pass them). msa_params_init writes exactly
// sizeof of this header's struct, also when the loaded library is newer.
inline msa_model_params model_params() {
  msa_model_params p;
  check(msa_params_init(MSA_PARAMS_MODEL, &p, sizeof p));
  return p;
}
inline msa_memory_params memory_params() {
  msa_memory_params p;
  check(msa_params_init(MSA_PARAMS_MEMORY, &p, sizeof p));
  return p;
}
inline msa_generate_params generate_params() {
  msa_generate_params p;
  check(msa_params_init(MSA_PARAMS_GENERATE, &p, sizeof p));
  return p;
}

// A loaded checkpoint. Immutable once loaded; may be shared by threads (by reference).
class Model {
 public:
  explicit Model(const std::string& dir, const msa_model_params& params = model_params()) {
    msa_model* m = nullptr;
    check(msa_model_load(dir.c_str(), &params, &m));
    h_ = Owned(m);
  }
  const msa_model* get() const noexcept { return h_.get(); }

  msa_model_desc info() const {
    msa_model_desc d{};
    d.struct_size = sizeof d;
    check(msa_model_info(h_.get(), &d));
    return d;
  }
  // The model's tokenizer (borrowed; empty when the model was loaded without one).
  TokenizerView tokenizer() const noexcept { return TokenizerView(msa_model_tokenizer(h_.get())); }
  // Logits of the last position of `tokens`.
  std::vector<float> logits(const std::vector<int32_t>& tokens) const {
    std::vector<float> out(static_cast<size_t>(info().vocab_size));
    check(msa_model_logits(h_.get(), tokens.data(), static_cast<int32_t>(tokens.size()), out.data(),
                           static_cast<int64_t>(out.size())));
    return out;
  }

 private:
  using Owned = detail::Handle<msa_model, &msa_model_free>;
  Owned h_;
};

// Progress of Memory::add_documents: (documents done, documents total, tokens done, tokens total).
// Return true to continue, false to cancel (the call then throws msa::Error with MSA_ERR_CANCELLED).
using ProgressCallback = std::function<bool(int64_t, int64_t, int64_t, int64_t)>;

// One document to encode. `id` is used when has_id is true; otherwise the bank assigns the next id.
struct Document {
  std::string text;
  uint64_t id = 0;
  bool has_id = false;
};

// A memory bank of encoded documents for one model.
class Memory {
 public:
  explicit Memory(const Model& model, const msa_memory_params& params = memory_params()) {
    msa_memory* m = nullptr;
    check(msa_memory_create(model.get(), &params, &m));
    h_ = Owned(m);
  }
  const msa_memory* get() const noexcept { return h_.get(); }
  msa_memory* get() noexcept { return h_.get(); }

  // Encodes and adds the documents atomically; returns their ids.
  std::vector<uint64_t> add_documents(const std::vector<Document>& docs, const ProgressCallback& progress = {}) {
    std::vector<msa_document> c(docs.size());
    for (size_t i = 0; i < docs.size(); ++i) {
      c[i] = msa_document{};
      c[i].text = docs[i].text.data();
      c[i].text_len = docs[i].text.size();
      c[i].id = docs[i].id;
      c[i].has_id = docs[i].has_id ? 1 : 0;
    }
    std::vector<uint64_t> ids(docs.size());
    Trampoline t{&progress, nullptr};
    msa_status st = msa_memory_add_documents(h_.get(), c.data(), c.size(), progress ? &Trampoline::call : nullptr,
                                             &t, ids.data());
    if (t.error) std::rethrow_exception(t.error);
    check(st);
    return ids;
  }
  std::vector<uint64_t> add_documents(const std::vector<std::string>& texts, const ProgressCallback& progress = {}) {
    std::vector<Document> docs(texts.size());
    for (size_t i = 0; i < texts.size(); ++i) docs[i].text = texts[i];
    return add_documents(docs, progress);
  }

  msa_memory_usage stats() const {
    msa_memory_usage u{};
    u.struct_size = sizeof u;
    check(msa_memory_stats(h_.get(), &u));
    return u;
  }

 private:
  struct Trampoline {
    const ProgressCallback* cb;
    std::exception_ptr error;
    static int call(int64_t d, int64_t dt, int64_t t, int64_t tt, void* user) noexcept {
      auto* self = static_cast<Trampoline*>(user);
      try {
        return (*self->cb)(d, dt, t, tt) ? 0 : 1;
      } catch (...) {
        self->error = std::current_exception();
        return 1;
      }
    }
  };
  using Owned = detail::Handle<msa_memory, &msa_memory_free>;
  Owned h_;
};

// One routed document of a router layer.
struct RoutedDocument {
  uint64_t id;
  float score;
};

// The outcome of generate() or route(); owns the C result.
class Result {
 public:
  explicit Result(msa_result* r) noexcept : h_(r) {}
  const msa_result* get() const noexcept { return h_.get(); }

  std::string text() const { return msa_result_text(h_.get()); }
  std::string generated_text() const { return msa_result_generated_text(h_.get()); }
  std::string transcript() const { return msa_result_transcript(h_.get()); }
  std::string stop_reason() const { return msa_result_stop_reason(h_.get()); }
  bool cancelled() const { return stop_reason() == "cancelled"; }
  std::vector<int32_t> tokens() const {
    const int32_t* p = nullptr;
    int64_t n = msa_result_tokens(h_.get(), &p);
    return p && n > 0 ? std::vector<int32_t>(p, p + n) : std::vector<int32_t>();
  }
  int32_t n_rounds() const { return msa_result_n_rounds(h_.get()); }
  std::vector<uint64_t> round_documents(int32_t round) const {
    const uint64_t* p = nullptr;
    int64_t n = msa_result_round_documents(h_.get(), round, &p);
    return p && n > 0 ? std::vector<uint64_t>(p, p + n) : std::vector<uint64_t>();
  }
  int32_t n_router_layers() const { return msa_result_n_router_layers(h_.get()); }
  int32_t router_layer(int32_t slot) const { return msa_result_router_layer(h_.get(), slot); }
  // The top-k documents of router layer `slot` (0..n_router_layers()-1), best first.
  std::vector<RoutedDocument> layer_topk(int32_t slot) const {
    const uint64_t* ids = nullptr;
    const float* scores = nullptr;
    int64_t n = msa_result_layer_topk(h_.get(), slot, &ids, &scores);
    std::vector<RoutedDocument> out;
    for (int64_t i = 0; i < n; ++i) out.push_back({ids[i], scores[i]});
    return out;
  }
  msa_timings timings() const {
    msa_timings t{};
    t.struct_size = sizeof t;
    check(msa_result_timings(h_.get(), &t));
    return t;
  }

 private:
  using Owned = detail::Handle<msa_result, &msa_result_free>;
  Owned h_;
};

// Receives each piece of generated text (whole UTF-8 characters). Return true to continue, false to stop:
// generate() then returns a Result with cancelled() == true.
using TokenCallback = std::function<bool(std::string_view)>;

// msa_generate: `memory` may be null (plain generation). Throws msa::Error on failure (not on cancellation).
inline Result generate(const Model& model, const Memory* memory, const std::string& prompt,
                       const msa_generate_params& params = generate_params(), const TokenCallback& on_token = {}) {
  struct Trampoline {
    const TokenCallback* cb;
    std::exception_ptr error;
    static int call(const char* piece, size_t len, void* user) noexcept {
      auto* self = static_cast<Trampoline*>(user);
      try {
        return (*self->cb)(std::string_view(piece, len)) ? 0 : 1;
      } catch (...) {
        self->error = std::current_exception();
        return 1;
      }
    }
  } t{&on_token, nullptr};
  msa_result* r = nullptr;
  msa_status st = msa_generate(model.get(), memory ? memory->get() : nullptr, prompt.c_str(), &params,
                               on_token ? &Trampoline::call : nullptr, &t, &r);
  Result result(r);
  if (t.error) std::rethrow_exception(t.error);
  if (st != MSA_ERR_CANCELLED) check(st);
  return result;
}

// msa_route: retrieval only (top-k documents per router layer, no decoding).
inline Result route(const Model& model, const Memory& memory, const std::string& prompt,
                    const msa_generate_params& params = generate_params()) {
  msa_result* r = nullptr;
  check(msa_route(model.get(), memory.get(), prompt.c_str(), &params, &r));
  return Result(r);
}

// msa_checkpoint_init: writes a random checkpoint (tests, demos).
inline void write_random_checkpoint(const std::string& out_dir, const char* preset = "tiny", uint64_t seed = 0,
                                    const char* tokenizer_dir = nullptr) {
  msa_checkpoint_params p;
  check(msa_params_init(MSA_PARAMS_CHECKPOINT, &p, sizeof p));
  p.preset = preset;
  p.seed = seed;
  p.tokenizer_dir = tokenizer_dir;
  check(msa_checkpoint_init(&p, out_dir.c_str()));
}

}  // namespace msa

#endif  // MSA_MSA_HPP
