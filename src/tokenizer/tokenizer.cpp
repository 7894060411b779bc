#include "tokenizer/tokenizer.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <utility>

#include "core/file_map.h"
#include "core/limits.h"
#include "core/log.h"
#include "tokenizer/bpe.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/normalize.h"
#include "tokenizer/string_map.h"

namespace msa {

using json = nlohmann::json;

namespace {

enum : uint8_t { kValid = 1, kAdded = 2, kSpecial = 4 };

// The GPT-2 regex that ByteLevel(use_regex=true) applies (tokenizers: pre_tokenizers/byte_level.rs).
constexpr const char* kByteLevelRegex =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

// SAX reader of tokenizer.json: model.vocab and model.merges (the bulk of the file) go straight into
// vectors; everything else becomes a small DOM. Much faster than a full DOM of the 11 MB file.
class TokenizerJsonReader : public nlohmann::json_sax<json> {
 public:
  json root;
  std::vector<std::pair<std::string, int64_t>> vocab;
  std::vector<std::pair<std::string, std::string>> merges;
  std::string error;  // set when the structure of vocab/merges is wrong

  bool null() override { return value(json(nullptr)); }
  bool boolean(bool v) override { return value(json(v)); }
  bool number_integer(number_integer_t v) override {
    if (mode_ == kVocab) return vocab_value(v);
    return value(json(v));
  }
  bool number_unsigned(number_unsigned_t v) override {
    if (mode_ == kVocab) {
      if (v >= static_cast<number_unsigned_t>(limits::kMaxVocab)) return vocab_id_too_large(v);
      return vocab_value(static_cast<int64_t>(v));
    }
    return value(json(v));
  }
  bool number_float(number_float_t v, const string_t&) override {
    if (mode_ != kNormal) return bad("model.vocab/merges: unexpected number");
    return value(json(v));
  }
  bool string(string_t& s) override {
    if (mode_ == kMerges) {
      // "a b": exactly one space (HF: split(' ') must give two parts).
      size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        return bad("model.merges: entry " + std::to_string(merges.size()) + " is not \"a b\"");
      if (!merge_room()) return false;
      merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      return true;
    }
    if (mode_ == kMergePair) {
      if (pair_n_ >= 2) return bad("model.merges: pair with more than two strings");
      pair_[pair_n_++] = std::move(s);
      return true;
    }
    if (mode_ == kVocab) return bad("model.vocab: value is not an integer");
    return value(json(std::move(s)));
  }
  bool binary(binary_t&) override { return bad("binary value"); }
  bool start_object(std::size_t) override {
    if (mode_ != kNormal) return bad("model.vocab/merges: unexpected object");
    if (at_model_child() && key_ == "vocab") {
      mode_ = kVocab;
      return value(json::object());
    }
    json* p = value_ptr(json::object());
    stack_.push_back(p);
    names_.push_back(stack_.size() == 1 ? std::string() : key_);
    return true;
  }
  bool key(string_t& k) override {
    if (mode_ == kVocab) {
      vkey_ = std::move(k);
      return true;
    }
    if (mode_ != kNormal) return bad("model.merges: unexpected key");
    key_ = std::move(k);
    return true;
  }
  bool end_object() override {
    if (mode_ == kVocab) {
      mode_ = kNormal;
      return true;
    }
    stack_.pop_back();
    names_.pop_back();
    return true;
  }
  bool start_array(std::size_t) override {
    if (mode_ == kMerges) {
      mode_ = kMergePair;
      pair_n_ = 0;
      return true;
    }
    if (mode_ != kNormal) return bad("model.vocab/merges: unexpected array");
    if (at_model_child() && key_ == "merges") {
      mode_ = kMerges;
      return value(json::array());
    }
    json* p = value_ptr(json::array());
    stack_.push_back(p);
    names_.push_back(key_);
    return true;
  }
  bool end_array() override {
    if (mode_ == kMergePair) {
      if (pair_n_ != 2) return bad("model.merges: pair without two strings");
      if (!merge_room()) return false;
      merges.emplace_back(std::move(pair_[0]), std::move(pair_[1]));
      mode_ = kMerges;
      return true;
    }
    if (mode_ == kMerges) {
      mode_ = kNormal;
      return true;
    }
    stack_.pop_back();
    names_.pop_back();
    return true;
  }
  bool parse_error(std::size_t pos, const std::string&, const nlohmann::detail::exception& ex) override {
    if (error.empty()) error = "invalid JSON at byte " + std::to_string(pos) + ": " + ex.what();
    return false;
  }

 private:
  enum Mode { kNormal, kVocab, kMerges, kMergePair };
  bool bad(const std::string& msg) {
    if (error.empty()) error = msg;
    return false;
  }
  bool at_model_child() const {
    return stack_.size() == 2 && names_[1] == "model" && stack_.back()->is_object();
  }
  bool vocab_value(int64_t v) {
    if (v < 0) return bad("model.vocab: negative id for \"" + vkey_ + "\"");
    if (v >= limits::kMaxVocab) return vocab_id_too_large(static_cast<uint64_t>(v));
    if (static_cast<int64_t>(vocab.size()) >= limits::kMaxVocab)
      return bad("model.vocab: more than " + std::to_string(limits::kMaxVocab) + " entries (MSA_MAX_VOCAB)");
    vocab.emplace_back(std::move(vkey_), v);
    return true;
  }
  bool vocab_id_too_large(uint64_t v) {
    return bad("model.vocab: id " + std::to_string(v) + " of \"" + vkey_ + "\" is out of range (ids are < " +
               std::to_string(limits::kMaxVocab) + ", MSA_MAX_VOCAB)");
  }
  bool merge_room() {
    if (static_cast<int64_t>(merges.size()) < Tokenizer::kMaxMerges) return true;
    return bad("model.merges: more than " + std::to_string(Tokenizer::kMaxMerges) + " entries");
  }
  json* value_ptr(json&& v) {
    if (stack_.empty()) {
      root = std::move(v);
      return &root;
    }
    json& top = *stack_.back();
    if (top.is_array()) {
      top.push_back(std::move(v));
      return &top.back();
    }
    json& slot = top[key_];
    slot = std::move(v);
    return &slot;
  }
  bool value(json&& v) {
    value_ptr(std::move(v));
    return true;
  }

  Mode mode_ = kNormal;
  std::vector<json*> stack_;
  std::vector<std::string> names_;  // key under which each open container sits
  std::string key_, vkey_;
  std::string pair_[2];
  int pair_n_ = 0;
};

bool is_dir(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
bool is_file(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string type_of(const json& j) {
  if (j.is_object() && j.contains("type") && j["type"].is_string()) return j["type"].get<std::string>();
  return std::string();
}

bool flag(const json& j, const char* key, bool def = false) {
  if (!j.is_object() || !j.contains(key) || j[key].is_null()) return def;
  return j[key].is_boolean() ? j[key].get<bool>() : def;
}

}  // namespace

// Token bytes (or added-token text) -> id.
struct Tokenizer::Lookup {
  struct KeyOf {
    const Tokenizer* t = nullptr;
    std::string_view operator()(int32_t id) const {
      size_t i = static_cast<size_t>(id);
      if (t->flags_[i] & kAdded) return t->added_[t->added_index_[i]].content;
      return std::string_view(t->bytes_.data() + t->offsets_[i], t->offsets_[i + 1] - t->offsets_[i]);
    }
  };
  tok::StringIdMap<KeyOf> by_bytes;
};

Tokenizer::Tokenizer() : bpe_(new tok::BpeModel()), lookup_(new Lookup()) {}
Tokenizer::~Tokenizer() = default;

// ------------------------------------------------------------------------------------------- loading
class Tokenizer::Builder {
 public:
  Builder(Tokenizer* t, std::string name) : t_(t), name_(std::move(name)) {}

  Status err(StatusCode code, const std::string& msg) const {
    return Status(code, name_ + ": " + msg);
  }
  Status unsupported(const std::string& msg) const {
    return Status(StatusCode::kUnsupported, name_ + ": " + msg + " (libmsa implements the Qwen2/Qwen3 byte-level BPE "
                  "kind of tokenizer.json only)");
  }

  Status load(std::string_view tokenizer_json, std::string_view config_json, const std::string& config_name) {
    TokenizerJsonReader r;
    bool ok = json::sax_parse(tokenizer_json.begin(), tokenizer_json.end(), &r, json::input_format_t::json, true);
    if (!ok || !r.error.empty())
      return err(StatusCode::kTokenizer, r.error.empty() ? std::string("invalid JSON") : r.error);
    MSA_RETURN_IF_ERROR(build(r));
    if (!config_json.empty()) MSA_RETURN_IF_ERROR(load_config(config_json, config_name));
    return Status::Ok();
  }

  Status build(TokenizerJsonReader& r) {
    const json& root = r.root;
    if (!root.is_object()) return err(StatusCode::kTokenizer, "top level is not a JSON object");
    if (!root.contains("model") || !root["model"].is_object())
      return err(StatusCode::kTokenizer, "no \"model\" object");
    MSA_RETURN_IF_ERROR(check_model(root["model"]));
    if (root.contains("truncation") && !root["truncation"].is_null())
      return unsupported("\"truncation\" is set");
    if (root.contains("padding") && !root["padding"].is_null()) return unsupported("\"padding\" is set");
    MSA_RETURN_IF_ERROR(check_normalizer(root.contains("normalizer") ? root["normalizer"] : json()));
    MSA_RETURN_IF_ERROR(check_pre_tokenizer(root.contains("pre_tokenizer") ? root["pre_tokenizer"] : json()));
    MSA_RETURN_IF_ERROR(check_post_processor(root.contains("post_processor") ? root["post_processor"] : json()));
    MSA_RETURN_IF_ERROR(check_decoder(root.contains("decoder") ? root["decoder"] : json()));
    static std::once_flag warned;
    std::call_once(warned, [] {
      for (const std::string& w : {tok::pcre2_version_warning(), tok::utf8proc_version_warning()})
        if (!w.empty()) log(LogLevel::kWarn, w);
    });
    const json& added = root.contains("added_tokens") ? root["added_tokens"] : json::array();
    if (!added.is_array()) return err(StatusCode::kTokenizer, "added_tokens is not an array");
    if (static_cast<int64_t>(added.size()) > limits::kMaxVocab)
      return err(StatusCode::kTokenizer, "added_tokens: more than " + std::to_string(limits::kMaxVocab) +
                                             " entries (MSA_MAX_VOCAB)");
    // The id tables are dense (id -> bytes); their size, 1 + the largest id, is bounded by the number of
    // tokens the file defines, so that a small file cannot name an id that makes us allocate gigabytes.
    defined_tokens_ = static_cast<int64_t>(r.vocab.size()) + static_cast<int64_t>(added.size());
    id_space_limit_ = std::min<int64_t>(limits::kMaxVocab,
                                        Tokenizer::kIdSpaceFactor * defined_tokens_ + Tokenizer::kIdSpaceSlack);
    MSA_RETURN_IF_ERROR(build_vocab(r));
    MSA_RETURN_IF_ERROR(build_added(added));
    MSA_RETURN_IF_ERROR(build_merges(r, root["model"]));
    finish_tables();
    return Status::Ok();
  }

  Status load_config(std::string_view text, const std::string& cname) {
    json c = json::parse(text.begin(), text.end(), nullptr, false);
    if (c.is_discarded() || !c.is_object())
      return Status(StatusCode::kTokenizer, cname + ": not a valid JSON object");
    auto special = [&](const char* key, int32_t* id) -> Status {
      if (!c.contains(key) || c[key].is_null()) return Status::Ok();
      const json& v = c[key];
      std::string content;
      if (v.is_string()) {
        content = v.get<std::string>();
      } else if (v.is_object() && v.contains("content") && v["content"].is_string()) {
        content = v["content"].get<std::string>();
      } else {
        return Status(StatusCode::kTokenizer, cname + ": \"" + key + "\" is neither a string nor {content}");
      }
      *id = t_->token_to_id(content);
      if (*id < 0)
        return Status(StatusCode::kTokenizer,
                      cname + ": \"" + key + "\" names \"" + content + "\", which is not a token");
      return Status::Ok();
    };
    MSA_RETURN_IF_ERROR(special("bos_token", &t_->bos_id_));
    MSA_RETURN_IF_ERROR(special("eos_token", &t_->eos_id_));
    MSA_RETURN_IF_ERROR(special("pad_token", &t_->pad_id_));
    if (c.contains("split_special_tokens") && flag(c, "split_special_tokens"))
      return Status(StatusCode::kUnsupported, cname + ": split_special_tokens=true is not supported");
    if (c.contains("chat_template")) {
      const json& ct = c["chat_template"];
      if (ct.is_string()) {
        t_->chat_template_ = ct.get<std::string>();
      } else if (ct.is_array()) {  // [{"name": ..., "template": ...}]: take "default", else the first
        for (const json& e : ct) {
          if (!e.is_object() || !e.contains("template") || !e["template"].is_string()) continue;
          bool is_default = e.contains("name") && e["name"] == "default";
          if (t_->chat_template_.empty() || is_default) t_->chat_template_ = e["template"].get<std::string>();
          if (is_default) break;
        }
      }
    }
    return Status::Ok();
  }

 private:
  Status check_model(const json& m) {
    std::string type = type_of(m);
    if (!type.empty() && type != "BPE") return unsupported("model type \"" + type + "\"");
    if (m.contains("dropout") && !m["dropout"].is_null()) {
      if (!m["dropout"].is_number() || m["dropout"].get<double>() != 0.0)
        return unsupported("BPE dropout is set");
    }
    for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      if (m.contains(k) && !m[k].is_null() && !(m[k].is_string() && m[k].get<std::string>().empty()))
        return unsupported(std::string("BPE ") + k + " is set");
    }
    if (flag(m, "byte_fallback")) return unsupported("BPE byte_fallback is set");
    t_->ignore_merges_ = flag(m, "ignore_merges");
    return Status::Ok();
  }

  Status check_normalizer(const json& n) {
    if (n.is_null()) return Status::Ok();
    std::string type = type_of(n);
    if (type == "NFC") {
      t_->nfc_ = true;
      return Status::Ok();
    }
    if (type == "Sequence" && n.contains("normalizers") && n["normalizers"].is_array()) {
      for (const json& e : n["normalizers"]) {
        if (type_of(e) != "NFC") return unsupported("normalizer \"" + type_of(e) + "\" in a Sequence");
        t_->nfc_ = true;
      }
      return Status::Ok();
    }
    return unsupported("normalizer \"" + type + "\"");
  }

  Status add_split(const json& s) {
    if (!s.contains("pattern") || !s["pattern"].is_object()) return err(StatusCode::kTokenizer, "Split without pattern");
    const json& p = s["pattern"];
    std::string pcre;
    if (p.contains("Regex") && p["Regex"].is_string()) {
      MSA_RETURN_IF_ERROR(prefix(tok::translate_onig_pattern(p["Regex"].get<std::string>(), &pcre)));
    } else if (p.contains("String") && p["String"].is_string()) {
      pcre = tok::pcre_quote(p["String"].get<std::string>());
    } else {
      return err(StatusCode::kTokenizer, "Split pattern is neither {Regex} nor {String}");
    }
    std::string behavior = s.contains("behavior") && s["behavior"].is_string() ? s["behavior"].get<std::string>() : "";
    if (behavior != "Isolated") return unsupported("Split behavior \"" + behavior + "\"");
    if (flag(s, "invert")) return unsupported("inverted Split");
    std::unique_ptr<tok::RegexSplitter> sp;
    MSA_RETURN_IF_ERROR(prefix(tok::RegexSplitter::create(pcre, &sp)));
    t_->splitters_.push_back(std::move(sp));
    return Status::Ok();
  }

  Status check_pre_tokenizer(const json& p) {
    std::vector<json> steps;
    if (type_of(p) == "Sequence" && p.contains("pretokenizers") && p["pretokenizers"].is_array()) {
      for (const json& e : p["pretokenizers"]) steps.push_back(e);
    } else if (!p.is_null()) {
      steps.push_back(p);
    }
    if (steps.empty() || type_of(steps.back()) != "ByteLevel")
      return unsupported("pre_tokenizer without a final ByteLevel step");
    for (size_t i = 0; i + 1 < steps.size(); ++i) {
      std::string type = type_of(steps[i]);
      if (type != "Split") return unsupported("pre_tokenizer \"" + type + "\"");
      MSA_RETURN_IF_ERROR(add_split(steps[i]));
    }
    const json& bl = steps.back();
    if (flag(bl, "add_prefix_space")) return unsupported("ByteLevel add_prefix_space=true");
    if (flag(bl, "use_regex", true)) {
      std::string pcre;
      MSA_RETURN_IF_ERROR(prefix(tok::translate_onig_pattern(kByteLevelRegex, &pcre)));
      std::unique_ptr<tok::RegexSplitter> sp;
      MSA_RETURN_IF_ERROR(prefix(tok::RegexSplitter::create(pcre, &sp)));
      t_->splitters_.push_back(std::move(sp));
    }
    return Status::Ok();
  }

  Status check_post_processor(const json& p) {
    if (p.is_null()) return Status::Ok();
    std::string type = type_of(p);
    if (type == "ByteLevel") return Status::Ok();  // offsets only; adds no token
    return unsupported("post_processor \"" + type + "\" (it would add special tokens)");
  }

  Status check_decoder(const json& d) {
    std::string type = type_of(d);
    if (type == "ByteLevel") return Status::Ok();
    return unsupported("decoder \"" + (d.is_null() ? std::string("null") : type) + "\"");
  }

  Status build_vocab(TokenizerJsonReader& r) {
    if (r.vocab.empty()) return err(StatusCode::kTokenizer, "model.vocab is missing or empty");
    int64_t max_id = -1;
    const std::string* max_tok = nullptr;
    for (auto& e : r.vocab) {
      if (e.second > max_id) {
        max_id = e.second;
        max_tok = &e.first;
      }
    }
    if (max_id >= id_space_limit_) return id_space_error("model.vocab", *max_tok, max_id);
    vocab_strings_.assign(static_cast<size_t>(max_id + 1), std::string());
    has_.assign(static_cast<size_t>(max_id + 1), 0);
    vocab_index_.set_key_of(VocabKey{&vocab_strings_});
    vocab_index_.reserve(r.vocab.size());
    for (auto& e : r.vocab) {
      size_t id = static_cast<size_t>(e.second);
      if (has_[id]) return err(StatusCode::kTokenizer, "model.vocab: id " + std::to_string(id) + " used twice");
      has_[id] = 1;
      vocab_strings_[id] = std::move(e.first);
    }
    for (size_t id = 0; id < vocab_strings_.size(); ++id) {
      if (!has_[id]) continue;
      if (!vocab_index_.insert(static_cast<int32_t>(id)))
        return err(StatusCode::kTokenizer, "model.vocab: token \"" + vocab_strings_[id] + "\" appears twice");
    }
    r.vocab.clear();
    r.vocab.shrink_to_fit();
    // Single-byte tokens.
    for (int b = 0; b < 256; ++b) {
      std::string s;
      tok::utf8_append(tok::byte_to_char(static_cast<uint8_t>(b)), &s);
      t_->bpe_->byte_id[b] = vocab_index_.find(s);
    }
    return Status::Ok();
  }

  Status build_added(const json& a) {
    if (!a.is_array()) return err(StatusCode::kTokenizer, "added_tokens is not an array");
    for (const json& e : a) {
      if (!e.is_object() || !e.contains("id") || !e["id"].is_number_integer() || !e.contains("content") ||
          !e["content"].is_string())
        return err(StatusCode::kTokenizer, "added_tokens: entry without integer id and string content");
      AddedToken t;
      t.content = e["content"].get<std::string>();
      int64_t id = e["id"].get<int64_t>();
      if (id < 0 || id >= limits::kMaxVocab)
        return err(StatusCode::kTokenizer, "added_tokens: id " + std::to_string(id) + " of \"" + t.content +
                                               "\" is out of range (ids are < " +
                                               std::to_string(limits::kMaxVocab) + ", MSA_MAX_VOCAB)");
      if (id >= id_space_limit_) return id_space_error("added_tokens", t.content, id);
      t.id = static_cast<int32_t>(id);
      t.special = flag(e, "special");
      if (t.content.empty()) return err(StatusCode::kTokenizer, "added_tokens: empty content");
      if (!tok::utf8_is_valid(t.content)) return err(StatusCode::kTokenizer, "added_tokens: content is not UTF-8");
      for (const char* k : {"lstrip", "rstrip", "single_word", "normalized"})
        if (flag(e, k)) return unsupported(std::string("added token \"") + t.content + "\" with " + k + "=true");
      t_->added_.push_back(std::move(t));
    }
    return Status::Ok();
  }

  Status build_merges(TokenizerJsonReader& r, const json& model) {
    tok::BpeModel& bpe = *t_->bpe_;
    bpe.merges.reserve(r.merges.size());
    std::string joined;
    int32_t guess = -1;  // vocabularies are usually in merge order: try the id after the previous result
    for (size_t i = 0; i < r.merges.size(); ++i) {
      const auto& m = r.merges[i];
      int32_t a = vocab_index_.find(m.first);
      int32_t b = vocab_index_.find(m.second);
      joined = m.first;
      joined += m.second;
      ++guess;
      int32_t c = guess >= 0 && static_cast<size_t>(guess) < vocab_strings_.size() && has_[static_cast<size_t>(guess)] &&
                          vocab_strings_[static_cast<size_t>(guess)] == joined
                      ? guess
                      : vocab_index_.find(joined);
      guess = c;
      if (a < 0 || b < 0 || c < 0)
        return err(StatusCode::kTokenizer, "model.merges: line " + std::to_string(i) + " (\"" + m.first + "\" \"" +
                   m.second + "\") uses a token that is not in the vocabulary");
      bpe.merges.insert(a, b, static_cast<int32_t>(i), c);
    }
    r.merges.clear();
    r.merges.shrink_to_fit();
    if (model.contains("unk_token") && model["unk_token"].is_string()) {
      int32_t unk = vocab_index_.find(model["unk_token"].get<std::string>());
      if (unk < 0) return err(StatusCode::kTokenizer, "model.unk_token is not in the vocabulary");
      bpe.unk_id = unk;
    }
    return Status::Ok();
  }

  // HF ByteLevel decoder: a token made only of byte-level characters decodes to those bytes, any other
  // token to its own UTF-8 text.
  static std::string decoded_bytes(const std::string& token) {
    std::string out;
    const auto* p = reinterpret_cast<const unsigned char*>(token.data());
    const auto* e = p + token.size();
    if (!tok::utf8_is_valid(token)) return token;
    while (p < e) {
      uint32_t c = tok::utf8_next(p);
      int b = tok::char_to_byte(c);
      if (b < 0) return token;
      out.push_back(static_cast<char>(b));
    }
    return out;
  }

  void finish_tables() {
    Tokenizer& t = *t_;
    int64_t n = static_cast<int64_t>(vocab_strings_.size());
    for (const AddedToken& a : t.added_) n = std::max<int64_t>(n, int64_t{a.id} + 1);
    std::vector<std::string> bytes(static_cast<size_t>(n));
    t.flags_.assign(static_cast<size_t>(n), 0);
    for (size_t id = 0; id < vocab_strings_.size(); ++id) {
      if (!has_[id]) continue;
      bytes[id] = decoded_bytes(vocab_strings_[id]);
      t.flags_[id] = kValid;
    }
    for (const AddedToken& a : t.added_) {
      bytes[static_cast<size_t>(a.id)] = decoded_bytes(a.content);
      t.flags_[static_cast<size_t>(a.id)] = static_cast<uint8_t>(kValid | kAdded | (a.special ? kSpecial : 0));
    }
    t.offsets_.assign(static_cast<size_t>(n) + 1, 0);
    size_t total = 0;
    for (const auto& b : bytes) total += b.size();
    t.bytes_.reserve(total);
    for (size_t id = 0; id < bytes.size(); ++id) {
      t.offsets_[id] = static_cast<uint32_t>(t.bytes_.size());
      t.bytes_ += bytes[id];
      t.max_token_bytes_ = std::max(t.max_token_bytes_, bytes[id].size());
    }
    t.offsets_[bytes.size()] = static_cast<uint32_t>(t.bytes_.size());
    // bytes -> id (vocabulary), then added-token text -> id (wins).
    t.added_index_.assign(static_cast<size_t>(n), 0);
    for (uint32_t i = 0; i < t.added_.size(); ++i) t.added_index_[static_cast<size_t>(t.added_[i].id)] = i;
    auto& map = t.lookup_->by_bytes;
    map.set_key_of(Lookup::KeyOf{&t});
    map.reserve(bytes.size());
    for (size_t id = 0; id < bytes.size(); ++id)
      if ((t.flags_[id] & kValid) && !(t.flags_[id] & kAdded)) map.insert(static_cast<int32_t>(id));
    for (const AddedToken& a : t.added_) map.insert(a.id, /*replace=*/true);
    // Matching order: by first byte, longest first.
    t.added_by_first_.assign(256, {});
    for (uint32_t i = 0; i < t.added_.size(); ++i)
      t.added_by_first_[static_cast<unsigned char>(t.added_[i].content[0])].push_back(i);
    for (auto& v : t.added_by_first_)
      std::stable_sort(v.begin(), v.end(), [&](uint32_t x, uint32_t y) {
        return t.added_[x].content.size() > t.added_[y].content.size();
      });
    t.has_added_ = !t.added_.empty();
  }

  Status id_space_error(const char* where, const std::string& token, int64_t id) const {
    return err(StatusCode::kTokenizer,
               std::string(where) + ": id " + std::to_string(id) + " of \"" + token +
                   "\" is implausibly large for a file that defines " + std::to_string(defined_tokens_) +
                   " tokens (ids must be below min(" + std::to_string(Tokenizer::kIdSpaceFactor) +
                   " x tokens defined + " + std::to_string(Tokenizer::kIdSpaceSlack) + ", MSA_MAX_VOCAB) = " +
                   std::to_string(id_space_limit_) + ")");
  }

  Status prefix(Status s) const {
    if (s.ok()) return s;
    return Status(s.code(), name_ + ": " + s.message());
  }

  Tokenizer* t_;
  std::string name_;
  int64_t defined_tokens_ = 0;  // model.vocab entries + added_tokens entries
  int64_t id_space_limit_ = 0;  // every id must be below this (see build())
  std::vector<std::string> vocab_strings_;
  std::vector<uint8_t> has_;
  struct VocabKey {
    const std::vector<std::string>* v = nullptr;
    std::string_view operator()(int32_t id) const { return (*v)[static_cast<size_t>(id)]; }
  };
  tok::StringIdMap<VocabKey> vocab_index_;
};

Status Tokenizer::load_from_memory(std::string_view tokenizer_json, std::string_view config_json,
                                   const std::string& name, std::unique_ptr<Tokenizer>* out) {
  std::unique_ptr<Tokenizer> t(new Tokenizer());
  Builder b(t.get(), name);
  MSA_RETURN_IF_ERROR(b.load(tokenizer_json, config_json, name + " (tokenizer_config.json)"));
  *out = std::move(t);
  return Status::Ok();
}

Status Tokenizer::load(const std::string& path, std::unique_ptr<Tokenizer>* out) {
  std::string file = path;
  if (is_dir(path)) file = path + "/tokenizer.json";
  MappedFile m;
  MSA_RETURN_IF_ERROR(MappedFile::open(file, &m));
  std::string dir = ".";
  size_t slash = file.find_last_of('/');
  if (slash != std::string::npos) dir = file.substr(0, slash == 0 ? 1 : slash);
  std::string cfg_path = dir + "/tokenizer_config.json";
  std::string cfg;
  if (is_file(cfg_path)) MSA_RETURN_IF_ERROR(read_file(cfg_path, &cfg));
  std::unique_ptr<Tokenizer> t(new Tokenizer());
  Builder b(t.get(), file);
  MSA_RETURN_IF_ERROR(b.load(std::string_view(reinterpret_cast<const char*>(m.data()), m.size()), cfg, cfg_path));
  *out = std::move(t);
  return Status::Ok();
}

// ------------------------------------------------------------------------------------------- encoding
bool Tokenizer::regex_jit() const {
  for (const auto& s : splitters_)
    if (!s->jit()) return false;
  return true;
}

Status Tokenizer::encode_text(std::string_view text, std::vector<int32_t>* ids) const {
  if (text.empty()) return Status::Ok();
  thread_local std::string scratch;
  thread_local std::vector<tok::Span> pieces, sub;
  std::string_view norm = nfc_ ? tok::nfc_normalize(text, &scratch) : text;
  pieces.clear();
  if (splitters_.empty()) {
    pieces.push_back({0, static_cast<uint32_t>(norm.size())});
  } else {
    MSA_RETURN_IF_ERROR(splitters_[0]->split(norm, &pieces));
    for (size_t k = 1; k < splitters_.size(); ++k) {
      sub.clear();
      for (const tok::Span& p : pieces) {
        size_t before = sub.size();
        MSA_RETURN_IF_ERROR(splitters_[k]->split(norm.substr(p.begin, p.end - p.begin), &sub));
        for (size_t i = before; i < sub.size(); ++i) {
          sub[i].begin += p.begin;
          sub[i].end += p.begin;
        }
      }
      pieces.swap(sub);
    }
  }
  const auto* base = reinterpret_cast<const uint8_t*>(norm.data());
  for (const tok::Span& p : pieces) {
    if (ignore_merges_) {
      int32_t id = lookup_->by_bytes.find(std::string_view(norm.data() + p.begin, p.end - p.begin));
      if (id >= 0 && !(flags_[static_cast<size_t>(id)] & kAdded)) {
        ids->push_back(id);
        continue;
      }
    }
    bpe_->encode_piece(base + p.begin, p.end - p.begin, ids);
  }
  return Status::Ok();
}

Status Tokenizer::encode(std::string_view text, const EncodeOptions& opts, std::vector<int32_t>* ids) const {
  std::string repaired;
  if (text.size() >= (size_t{1} << 32))
    return Error(StatusCode::kInvalidArgument, "tokenize: text longer than 4 GiB");
  if (!tok::utf8_is_valid(text)) {
    tok::utf8_repair(text, &repaired);
    text = repaired;
  }
  if (!has_added_ || !opts.parse_special) return encode_text(text, ids);
  const size_t n = text.size();
  const char* s = text.data();
  size_t seg = 0;
  size_t i = 0;
  while (i < n) {
    const auto& cands = added_by_first_[static_cast<unsigned char>(s[i])];
    if (!cands.empty()) {
      const AddedToken* hit = nullptr;
      for (uint32_t k : cands) {
        const AddedToken& a = added_[k];
        if (a.content.size() <= n - i && std::memcmp(s + i, a.content.data(), a.content.size()) == 0) {
          hit = &a;
          break;
        }
      }
      if (hit) {
        MSA_RETURN_IF_ERROR(encode_text(text.substr(seg, i - seg), ids));
        ids->push_back(hit->id);
        i += hit->content.size();
        seg = i;
        continue;
      }
    }
    ++i;
  }
  return encode_text(text.substr(seg), ids);
}

// ------------------------------------------------------------------------------------------- decoding
bool Tokenizer::is_valid_id(int32_t id) const {
  return id >= 0 && id < vocab_size() && (flags_[static_cast<size_t>(id)] & kValid);
}
bool Tokenizer::is_special(int32_t id) const { return is_valid_id(id) && (flags_[static_cast<size_t>(id)] & kSpecial); }
bool Tokenizer::is_added(int32_t id) const { return is_valid_id(id) && (flags_[static_cast<size_t>(id)] & kAdded); }

Status Tokenizer::token_bytes(int32_t id, std::string_view* bytes) const {
  if (!is_valid_id(id)) return Error(StatusCode::kInvalidArgument, "token id ", id, " is not in the vocabulary (size ",
                                     vocab_size(), ")");
  size_t i = static_cast<size_t>(id);
  *bytes = std::string_view(bytes_.data() + offsets_[i], offsets_[i + 1] - offsets_[i]);
  return Status::Ok();
}

int32_t Tokenizer::token_to_id(std::string_view token) const { return lookup_->by_bytes.find(token); }

Status Tokenizer::decode(const int32_t* ids, size_t n, bool skip_special, std::string* text) const {
  for (size_t i = 0; i < n; ++i)
    if (!is_valid_id(ids[i]))
      return Error(StatusCode::kInvalidArgument, "detokenize: id ", ids[i], " at position ", i,
                   " is not in the vocabulary (size ", vocab_size(), ")");
  tok::Utf8Repairer rep;
  for (size_t i = 0; i < n; ++i) {
    size_t id = static_cast<size_t>(ids[i]);
    if (skip_special && (flags_[id] & kSpecial)) continue;
    rep.feed(bytes_.data() + offsets_[id], offsets_[id + 1] - offsets_[id], text);
  }
  rep.finish(text);
  return Status::Ok();
}

// ------------------------------------------------------------------------------------------- streaming
StreamingDecoder::StreamingDecoder(const Tokenizer& tok, bool skip_special)
    : tok_(&tok), skip_special_(skip_special) {}

Status StreamingDecoder::push(int32_t id, std::string* out) {
  std::string_view b;
  MSA_RETURN_IF_ERROR(tok_->token_bytes(id, &b));
  if (skip_special_ && tok_->is_special(id)) return Status::Ok();
  rep_.feed(b.data(), b.size(), out);
  return Status::Ok();
}

void StreamingDecoder::flush(std::string* out) { rep_.finish(out); }

}  // namespace msa
