// msa::Tokenizer — the Hugging Face `tokenizers` byte-level BPE pipeline of Qwen2/Qwen3 checkpoints,
// byte-exact with `tokenizers` 0.23 (the oracle; tests/data/tokenizer/goldens.jsonl.zst).
//
// Encoding, in HF's order:
//   0. Invalid UTF-8 is repaired first: every maximal ill-formed subsequence becomes U+FFFD (see utf8.h).
//      That is what a caller of HF must do to pass bytes at all (`bytes.decode("utf-8", "replace")`).
//      Embedded NUL bytes are ordinary text.
//   1. Added tokens (tokenizer.json `added_tokens`, special or not) are cut out of the raw text, leftmost
//      then longest match; their text is never normalised or split.
//   2. The text between them: NFC (normalize.h), the `Split` regex(es) (pretokenize.h), byte-level BPE
//      (bpe.h).
//   3. The post-processor (ByteLevel) adds nothing: `add_special` has no effect for these tokenizers
//      (Qwen has no BOS and appends no EOS); it is accepted for API symmetry.
// Decoding: ids -> token bytes (added tokens: their text) -> UTF-8 with the same U+FFFD repair as HF's
// ByteLevel decoder (String::from_utf8_lossy). Round trip: decode(encode(s)) == s for every valid UTF-8
// string that is NFC outside its added tokens (NFC is part of the model's tokenisation, as in HF).
//
// Supported tokenizer.json: model BPE (merges as "a b" strings or ["a","b"] pairs, no dropout, no
// continuing_subword_prefix / end_of_word_suffix, byte_fallback false), normalizer NFC (or none),
// pre_tokenizer Split(Isolated, not inverted) and/or ByteLevel (add_prefix_space false), post_processor
// ByteLevel (or none), decoder ByteLevel, added tokens without lstrip/rstrip/single_word/normalized.
// Anything else is rejected with kUnsupported (never a silent fallback).
//
// Limits (checked before anything is sized from them; kTokenizer naming the file and the entry):
//   - every id (model.vocab and added_tokens) is < MSA_MAX_VOCAB (2^24), and so are the entry counts;
//   - ids may leave holes (as in HF), but the id space is bounded by what the file defines: every id is
//     < kIdSpaceFactor x (vocab entries + added tokens) + kIdSpaceSlack. The id tables are dense, so this keeps
//     their size proportional to the file (a one-entry file naming id 2^31-1 is refused instead of making the
//     loader allocate 64 GiB). Released byte-level BPE tokenizers are dense (Qwen3: ids 0..151668, no hole),
//     far inside the bound; any file accepted encodes and decodes exactly as HF `tokenizers`;
//   - at most kMaxMerges merges.
// tokenizer_config.json only names tokens (bos/eos/pad) and carries the chat template; it sizes nothing.
//
// A loaded Tokenizer is immutable; every const method is thread-safe (per-thread caches).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/utf8.h"

namespace msa::tok {
class BpeModel;
}  // namespace msa::tok

namespace msa {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
};

struct EncodeOptions {
  bool add_special = false;   // no effect for ByteLevel post-processors (see above)
  bool parse_special = true;  // match added tokens in the text (HF default); false: plain text only
};

class Tokenizer {
 public:
  static constexpr int64_t kIdSpaceFactor = 2;
  static constexpr int64_t kIdSpaceSlack = 1024;
  static constexpr int64_t kMaxMerges = int64_t{1} << 26;  // 4 x MSA_MAX_VOCAB; merge ranks fit in int32

  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Loads `path` (a tokenizer.json, or a directory holding one) and, when present next to it,
  // tokenizer_config.json (special tokens, chat template). Errors: kIo, kTokenizer (the file named in
  // the message), kUnsupported.
  static Status load(const std::string& path, std::unique_ptr<Tokenizer>* out);

  // Same from memory. `config_json` may be empty (no tokenizer_config.json). `name` is used in messages.
  static Status load_from_memory(std::string_view tokenizer_json, std::string_view config_json,
                                 const std::string& name, std::unique_ptr<Tokenizer>* out);

  // Appends the ids of `text` (any bytes; see the header comment) to `ids`.
  Status encode(std::string_view text, const EncodeOptions& opts, std::vector<int32_t>* ids) const;
  Status encode(std::string_view text, std::vector<int32_t>* ids) const { return encode(text, {}, ids); }

  // Appends the text of `ids` to `text` (well-formed UTF-8; U+FFFD where the bytes are not).
  // skip_special drops added tokens marked special. Errors: kInvalidArgument (an id outside the
  // vocabulary; nothing is appended then).
  Status decode(const int32_t* ids, size_t n, bool skip_special, std::string* text) const;

  // The raw bytes of one token (a vocabulary token may be part of a UTF-8 sequence). Errors:
  // kInvalidArgument.
  Status token_bytes(int32_t id, std::string_view* bytes) const;

  // Id of the token whose bytes (or added-token text) are exactly `token`, or -1.
  int32_t token_to_id(std::string_view token) const;

  bool is_valid_id(int32_t id) const;
  bool is_special(int32_t id) const;
  bool is_added(int32_t id) const;

  // 1 + the largest id (model vocabulary and added tokens).
  int32_t vocab_size() const { return static_cast<int32_t>(offsets_.size()) - 1; }
  // Longest token in bytes (bounds the output of one streaming-decoder step: 3 * (this + 3)).
  size_t max_token_bytes() const { return max_token_bytes_; }

  // From tokenizer_config.json (-1 / empty when absent).
  int32_t bos_id() const { return bos_id_; }
  int32_t eos_id() const { return eos_id_; }
  int32_t pad_id() const { return pad_id_; }
  const std::string& chat_template() const { return chat_template_; }
  const std::vector<AddedToken>& added_tokens() const { return added_; }
  // True when the regex runs through PCRE2's JIT (else the interpreter).
  bool regex_jit() const;

 private:
  Tokenizer();
  class Builder;
  friend class Builder;

  Status encode_text(std::string_view text, std::vector<int32_t>* ids) const;

  std::unique_ptr<tok::BpeModel> bpe_;
  std::vector<std::unique_ptr<tok::RegexSplitter>> splitters_;
  bool nfc_ = false;
  bool ignore_merges_ = false;

  // Token bytes for decoding: id -> bytes_[offsets_[id] .. offsets_[id+1]).
  std::string bytes_;
  std::vector<uint32_t> offsets_;
  std::vector<uint8_t> flags_;  // kValid | kAdded | kSpecial
  size_t max_token_bytes_ = 0;

  // Added tokens, for matching: grouped by first byte, longest first.
  std::vector<AddedToken> added_;
  std::vector<uint32_t> added_index_;                  // id -> index into added_ (added ids only)
  std::vector<std::vector<uint32_t>> added_by_first_;  // 256 lists of indices into added_
  bool has_added_ = false;

  struct Lookup;
  std::unique_ptr<Lookup> lookup_;  // bytes -> id

  int32_t bos_id_ = -1, eos_id_ = -1, pad_id_ = -1;
  std::string chat_template_;
};

// Streaming detokenizer: push ids one at a time, get text that never ends inside a UTF-8 sequence.
// The concatenation of every push output and the final flush equals Tokenizer::decode of all ids.
// Not thread-safe (one per stream); the tokenizer must outlive it.
class StreamingDecoder {
 public:
  explicit StreamingDecoder(const Tokenizer& tok, bool skip_special = false);
  // Appends the text completed by `id` to `out` (possibly nothing). Errors: kInvalidArgument (bad id;
  // the state is unchanged).
  Status push(int32_t id, std::string* out);
  // Appends what is still held back (an incomplete sequence becomes U+FFFD) and resets the decoder.
  void flush(std::string* out);
  // Bytes held back (0..3).
  size_t pending() const { return rep_.pending(); }

 private:
  const Tokenizer* tok_;
  bool skip_special_;
  tok::Utf8Repairer rep_;
};

}  // namespace msa
