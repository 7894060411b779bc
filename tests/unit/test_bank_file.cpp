// Memory banks on disk (docs/FORMAT.md): round trips (routing results and generations bit-identical for f32,
// bf16 and int8 pages), refusal of a bank of another model naming the field, append-only adds, tombstones and
// compaction, corruption (truncation at every byte offset, 1,000 seeded single-bit flips: always a clean
// kCorrupt / kTruncated naming the file), and crash safety (a forked child SIGKILLed at random points of
// save / add / remove / compact: the bank opens and equals either the old or the new state exactly).
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <map>
#include <set>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "engine/encoder.h"
#include "engine/session.h"
#include "memory/bank_fingerprint.h"
#include "memory/memory_bank.h"
#include "msa/msa.h"
#include "test_bank_common.h"
#include "test_engine_common.h"

using namespace msa;
namespace fs = std::filesystem;

namespace {

using bank_test::kTexts;
const char* kQuestion = "Where is the Eiffel Tower?";

std::unique_ptr<MemoryBank> make_bank(const Model& model, PageDType dtype, size_t n = kTexts.size()) {
  std::unique_ptr<MemoryBank> bank;
  ENGINE_REQUIRE_OK(create_memory_bank(model, nullptr, &bank, dtype));
  std::vector<std::string_view> v(kTexts.begin(), kTexts.begin() + static_cast<std::ptrdiff_t>(n));
  std::vector<uint64_t> ids;
  for (size_t i = 0; i < n; ++i) ids.push_back(100 + 7 * i);
  Encoder enc(model);
  ENGINE_REQUIRE_OK(enc.add_documents(bank.get(), v, &ids));
  return bank;
}

// Routing of the question: per layer the top-k ids and the score bits, and every document's score bits.
std::vector<uint64_t> route_signature(const Model& model, const MemoryBank& bank, int64_t k = 3) {
  Session s(model, &bank);
  RouteOptions o;
  o.doc_top_k = k;
  RouteResult r;
  ENGINE_REQUIRE_OK(s.route(kQuestion, o, &r));
  std::vector<uint64_t> sig;
  for (const LayerRouting& l : r.layers) {
    sig.push_back(static_cast<uint64_t>(l.layer));
    for (const ScoredDocument& d : l.top) {
      uint32_t b;
      std::memcpy(&b, &d.score, 4);
      sig.push_back(d.id);
      sig.push_back(b);
    }
  }
  return sig;
}

std::vector<std::vector<float>> route_scores(const Model& model, const MemoryBank& bank) {
  Session s(model, &bank);
  RouteOptions o;
  o.doc_top_k = 2;
  o.record_scores = true;
  RouteResult r;
  ENGINE_REQUIRE_OK(s.route(kQuestion, o, &r));
  std::vector<std::vector<float>> out;
  for (const LayerRouting& l : r.layers) out.push_back(l.scores);
  return out;
}

std::vector<int32_t> generate_tokens(const Model& model, const MemoryBank& bank) {
  Session s(model, &bank);
  GenerateOptions o;
  o.mode = GenerateMode::kPlain;
  o.sampling.use_model_defaults = false;
  o.sampling.do_sample = false;
  o.max_new_tokens = 6;
  o.doc_top_k = 2;
  GenerateResult r;
  ENGINE_REQUIRE_OK(s.generate(kQuestion, o, &r));
  return r.generated_ids;
}

std::unique_ptr<MemoryBank> open_bank(const Model& model, const fs::path& dir, bool verify = false) {
  const bankfmt::Fingerprint& fp = bank_test::fingerprint_of(model);
  BankOpenOptions o;
  o.verify_content = verify;
  std::unique_ptr<MemoryBank> b;
  ENGINE_REQUIRE_OK(MemoryBank::open(dir.string(), model.config(), &fp, o, &b));
  return b;
}

// Everything observable about a bank: documents (ids, texts, tokens, tombstones), routing rows and decoded pages
// of every document, in DocStore order.
uint64_t bank_state(const MemoryBank& b) {
  const uint64_t h = bank_test::state_of(b);
  REQUIRE(h != 0);  // every page read
  return h;
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}
void spit(const fs::path& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(s.data(), static_cast<std::streamsize>(s.size()));
}

void copy_dir(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::remove_all(to, ec);
  fs::create_directories(to);
  for (const auto& e : fs::directory_iterator(from)) fs::copy_file(e.path(), to / e.path().filename());
}

}  // namespace

TEST_CASE("bank: save + open round trip is bit-identical (routing, pages, generation) for every dtype",
          "[bank]") {
  const Model& model = engine_test::micro();
  for (PageDType t : {PageDType::kF32, PageDType::kBF16, PageDType::kInt8}) {
    INFO(page_dtype_name(t));
    auto bank = make_bank(model, t);
    const auto route0 = route_signature(model, *bank);
    const auto gen0 = generate_tokens(model, *bank);
    const uint64_t state0 = bank_state(*bank);
    const fs::path dir = engine_test::new_temp_dir("bank_rt");
    ENGINE_REQUIRE_OK(bank->save(dir.string()));
    // The saved bank serves its pages from the new segment: still the same answers.
    CHECK(bank->stats().content_file_bytes > 0);
    CHECK(route_signature(model, *bank) == route0);
    CHECK(bank_state(*bank) == state0);
    for (bool verify : {false, true}) {
      auto opened = open_bank(model, dir, verify);
      CHECK(opened->dtype() == t);
      CHECK(opened->n_documents() == static_cast<int64_t>(kTexts.size()));
      CHECK(opened->path() == dir.string());
      CHECK(route_signature(model, *opened) == route0);
      CHECK(generate_tokens(model, *opened) == gen0);
      CHECK(bank_state(*opened) == state0);
      CHECK(opened->stats().content_ram_bytes == 0);  // content stays in the mapped file
      CHECK(opened->verify().ok());
    }
    // Bytes per dtype: routing rows shrink 4 / 2 / 1 (+ int8 scales).
    const MemoryStats st = bank->stats();
    const int64_t chunks = st.n_chunks * bank->n_router_layers();
    const int64_t per_row = static_cast<int64_t>(page_row_bytes(t, bank->width())) +
                            page_row_scales(t, model.config().num_key_value_heads) * 4 + 4;
    CHECK(st.routing_bytes == chunks * per_row);
  }
}

TEST_CASE("bank: f32 pages of a fresh bank equal the encoder's output; bf16/int8 stay close", "[bank]") {
  const Model& model = engine_test::micro();
  auto f32 = make_bank(model, PageDType::kF32);
  for (PageDType t : {PageDType::kBF16, PageDType::kInt8}) {
    INFO(page_dtype_name(t));
    auto q = make_bank(model, t);
    std::vector<float> k0, v0, k1, v1;
    for (int64_t i = 0; i < f32->n_documents(); ++i) {
      const size_t n = static_cast<size_t>(f32->document(i).n_chunks * f32->width());
      k0.resize(n), v0.resize(n), k1.resize(n), v1.resize(n);
      REQUIRE(f32->read_pages(0, i, k0.data(), v0.data()).ok());
      REQUIRE(q->read_pages(0, i, k1.data(), v1.data()).ok());
      double num = 0, den = 0;
      for (size_t j = 0; j < n; ++j) {
        num += (k1[j] - k0[j]) * (k1[j] - k0[j]) + (v1[j] - v0[j]) * (v1[j] - v0[j]);
        den += k0[j] * k0[j] + v0[j] * v0[j];
      }
      CHECK(std::sqrt(num / den) < (t == PageDType::kBF16 ? 0.01 : 0.02));
    }
    // Every document's routing score stays within a small fraction of the score range.
    const auto a = route_scores(model, *f32), b = route_scores(model, *q);
    REQUIRE(a.size() == b.size());
    for (size_t l = 0; l < a.size(); ++l) {
      REQUIRE(a[l].size() == b[l].size());
      float lo = a[l][0], hi = a[l][0];
      for (float x : a[l]) lo = std::min(lo, x), hi = std::max(hi, x);
      for (size_t d = 0; d < a[l].size(); ++d) {
        CHECK(std::fabs(a[l][d] - b[l][d]) <= 0.05f * std::max(hi - lo, std::fabs(hi)) + 1e-6f);
      }
    }
  }
}

TEST_CASE("bank: a bank of another model is refused with the differing field named", "[bank]") {
  const Model& model = engine_test::micro();
  auto bank = make_bank(model, PageDType::kBF16, 2);
  const fs::path dir = engine_test::new_temp_dir("bank_fp");
  ENGINE_REQUIRE_OK(bank->save(dir.string()));
  {
    const Model& other = engine_test::cached_model("micro", "", 99);  // same shapes, other weights
    const bankfmt::Fingerprint& fp = bank_test::fingerprint_of(other);
    std::unique_ptr<MemoryBank> b;
    const Status s = MemoryBank::open(dir.string(), other.config(), &fp, BankOpenOptions(), &b);
    CHECK(s.code() == StatusCode::kInvalidArgument);
    CHECK(s.message().find("weights_digest") != std::string::npos);
    CHECK(s.message().find(dir.string()) != std::string::npos);
  }
  {
    const Model& other = engine_test::cached_model("micro", R"({"pooling_kernel_size": 8})");
    const bankfmt::Fingerprint& fp = bank_test::fingerprint_of(other);
    std::unique_ptr<MemoryBank> b;
    const Status s = MemoryBank::open(dir.string(), other.config(), &fp, BankOpenOptions(), &b);
    CHECK(s.code() == StatusCode::kInvalidArgument);
    CHECK(s.message().find("pooling_kernel_size is 4 in the bank and 8 in the model") != std::string::npos);
  }
}

TEST_CASE("bank: add on an attached bank appends a segment; existing files are not rewritten", "[bank]") {
  const Model& model = engine_test::micro();
  auto bank = make_bank(model, PageDType::kInt8, 3);
  const fs::path dir = engine_test::new_temp_dir("bank_add");
  ENGINE_REQUIRE_OK(bank->save(dir.string()));
  std::map<std::string, std::string> before;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().filename() != "MANIFEST") before[e.path().filename().string()] = slurp(e.path());
  }
  auto opened = open_bank(model, dir);
  Encoder enc(model);
  std::vector<std::string_view> more(kTexts.begin() + 3, kTexts.end());
  std::vector<uint64_t> ids = {500, 501, 502};
  ENGINE_REQUIRE_OK(enc.add_documents(opened.get(), more, &ids));
  for (const auto& [name, bytes] : before) CHECK(slurp(dir / name) == bytes);
  BankFiles bf;
  ENGINE_REQUIRE_OK(read_bank_files(dir.string(), true, &bf));
  CHECK(bf.segments.size() == 2);
  CHECK(bf.manifest.generation == 2);
  auto reopened = open_bank(model, dir, true);
  CHECK(reopened->n_documents() == 6);
  CHECK(bank_state(*reopened) == bank_state(*opened));
  CHECK(route_signature(model, *reopened, 6) == route_signature(model, *opened, 6));
  // Adding an id that exists fails and commits nothing.
  std::vector<uint64_t> dup = {500};
  std::vector<std::string_view> one(kTexts.begin(), kTexts.begin() + 1);
  CHECK(enc.add_documents(reopened.get(), one, &dup).code() == StatusCode::kInvalidArgument);
  CHECK(read_bank_files(dir.string(), false, &bf).ok());
  CHECK(bf.manifest.generation == 2);
}

TEST_CASE("bank: remove tombstones (never routed, k = min(k, live)); compact drops them", "[bank]") {
  const Model& model = engine_test::micro();
  for (bool attached : {false, true}) {
    INFO("attached " << attached);
    auto bank = make_bank(model, PageDType::kBF16);
    const fs::path dir = engine_test::new_temp_dir("bank_rm");
    if (attached) ENGINE_REQUIRE_OK(bank->save(dir.string()));
    const std::vector<uint64_t> gone = {100, 114};
    CHECK(bank->remove({100, 999}).code() == StatusCode::kInvalidArgument);  // all or none
    CHECK(bank->n_live_documents() == 6);
    ENGINE_REQUIRE_OK(bank->remove(gone));
    CHECK(bank->remove({100}).code() == StatusCode::kInvalidArgument);  // already removed
    CHECK(bank->n_live_documents() == 4);
    CHECK(bank->find(100) < 0);
    CHECK(bank->is_removed_id(114));
    Session s(model, bank.get());
    RouteOptions o;
    o.doc_top_k = 16;
    RouteResult r;
    ENGINE_REQUIRE_OK(s.route(kQuestion, o, &r));
    for (const LayerRouting& l : r.layers) {
      CHECK(l.top.size() == 4);
      for (const ScoredDocument& d : l.top) CHECK((d.id != 100 && d.id != 114));
    }
    const auto before = route_signature(model, *bank, 16);
    // An id that was removed stays reserved until compaction.
    Encoder enc(model);
    std::vector<std::string_view> one(kTexts.begin(), kTexts.begin() + 1);
    std::vector<uint64_t> reuse = {100};
    CHECK(enc.add_documents(bank.get(), one, &reuse).code() == StatusCode::kInvalidArgument);
    if (attached) {
      auto reopened = open_bank(model, dir);
      CHECK(reopened->n_live_documents() == 4);
      CHECK(route_signature(model, *reopened, 16) == before);
    }
    ENGINE_REQUIRE_OK(bank->compact());
    CHECK(bank->n_documents() == 4);
    CHECK(bank->stats().n_removed == 0);
    CHECK(route_signature(model, *bank, 16) == before);
    ENGINE_REQUIRE_OK(enc.add_documents(bank.get(), one, &reuse));
    if (attached) {
      BankFiles bf;
      ENGINE_REQUIRE_OK(read_bank_files(dir.string(), true, &bf));
      CHECK(bf.manifest.tombstones.empty());
      CHECK(bf.segments.size() == 2);  // the compacted one + the add
      auto reopened = open_bank(model, dir);
      CHECK(bank_state(*reopened) == bank_state(*bank));
    }
  }
}

namespace {

// A small bank (2 short documents, micro model, int8) for the byte-by-byte tests.
fs::path small_bank_dir(const Model& model) {
  static fs::path dir;
  if (!dir.empty()) return dir;
  std::unique_ptr<MemoryBank> bank;
  ENGINE_REQUIRE_OK(create_memory_bank(model, nullptr, &bank, PageDType::kInt8));
  std::vector<std::string_view> v = {"Paris.", "Water boils at 100 C."};
  std::vector<uint64_t> ids = {1, 2};
  Encoder enc(model);
  ENGINE_REQUIRE_OK(enc.add_documents(bank.get(), v, &ids));
  dir = engine_test::new_temp_dir("bank_small");
  ENGINE_REQUIRE_OK(bank->save(dir.string()));
  std::vector<std::string_view> w = {"Honey never spoils."};
  std::vector<uint64_t> id3 = {3};
  ENGINE_REQUIRE_OK(enc.add_documents(bank.get(), w, &id3));  // a second segment
  ENGINE_REQUIRE_OK(bank->remove({1}));                        // and a tombstone
  return dir;
}

bool clean_failure(const Status& s, const std::string& file) {
  return (s.code() == StatusCode::kCorrupt || s.code() == StatusCode::kTruncated) &&
         s.message().find(file) != std::string::npos;
}

}  // namespace

TEST_CASE("bank: truncation at every byte offset of every file is a clean error naming the file", "[bank]") {
  const Model& model = engine_test::micro();
  const fs::path base = small_bank_dir(model);
  const fs::path dir = engine_test::new_temp_dir("bank_trunc");
  copy_dir(base, dir);
  size_t total = 0;
  for (const auto& e : fs::directory_iterator(base)) {
    const std::string name = e.path().filename().string();
    const std::string bytes = slurp(e.path());
    total += bytes.size();
    for (size_t n = 0; n < bytes.size(); ++n) {
      spit(dir / name, bytes.substr(0, n));
      BankFiles bf;
      const Status s = read_bank_files(dir.string(), false, &bf);
      INFO(name << " truncated to " << n << ": " << s.to_string());
      REQUIRE(clean_failure(s, name));
    }
    spit(dir / name, bytes);
  }
  CHECK(total < 64 * 1024);  // the test stays byte-by-byte cheap
  BankFiles bf;
  CHECK(read_bank_files(dir.string(), true, &bf).ok());
  // The bank with a file missing.
  fs::remove(dir / "MANIFEST");
  CHECK(read_bank_files(dir.string(), false, &bf).code() == StatusCode::kIo);
}

TEST_CASE("bank: 1,000 seeded single-bit flips are all detected", "[bank]") {
  const Model& model = engine_test::micro();
  const fs::path base = small_bank_dir(model);
  const fs::path dir = engine_test::new_temp_dir("bank_flip");
  copy_dir(base, dir);
  std::vector<std::pair<std::string, std::string>> files;
  for (const auto& e : fs::directory_iterator(base)) files.emplace_back(e.path().filename().string(), slurp(e.path()));
  size_t total = 0;
  for (const auto& f : files) total += f.second.size();
  const uint64_t good_state = bank_state(*open_bank(model, base));
  std::mt19937_64 rng(20261128);
  int lazy_open_ok = 0;
  for (int trial = 0; trial < 1000; ++trial) {
    // A byte uniformly over all files, a bit in it.
    size_t at = static_cast<size_t>(rng() % total);
    size_t fi = 0;
    while (at >= files[fi].second.size()) at -= files[fi++].second.size();
    const int bit = static_cast<int>(rng() % 8);
    std::string bytes = files[fi].second;
    bytes[at] = static_cast<char>(bytes[at] ^ (1 << bit));
    spit(dir / files[fi].first, bytes);
    INFO("trial " << trial << ": " << files[fi].first << " byte " << at << " bit " << bit);
    BankFiles bf;
    const Status full = read_bank_files(dir.string(), true, &bf);
    INFO(full.to_string());
    REQUIRE(clean_failure(full, files[fi].first));
    // Lazy open may succeed only when the flip is inside a content frame; then the bank refuses to serve it:
    // verify() and reading that page fail, every other page is still exact.
    const bankfmt::Fingerprint& fp = bank_test::fingerprint_of(model);
    std::unique_ptr<MemoryBank> b;
    const Status lazy = MemoryBank::open(dir.string(), model.config(), &fp, BankOpenOptions(), &b);
    if (lazy.ok()) {
      ++lazy_open_ok;
      const Status v = b->verify();
      REQUIRE(clean_failure(v, files[fi].first));
      REQUIRE(v.message().find("content pages") != std::string::npos);
      int bad_pages = 0;
      for (int64_t i = 0; i < b->n_documents(); ++i) {
        std::vector<float> k(static_cast<size_t>(b->document(i).n_chunks * b->width())), vv(k.size());
        for (int l = 0; l < b->n_router_layers(); ++l) {
          const Status r = b->read_pages(l, i, k.data(), vv.data());
          if (!r.ok()) {
            REQUIRE(clean_failure(r, files[fi].first));
            ++bad_pages;
          }
        }
      }
      REQUIRE(bad_pages == 1);
    } else {
      REQUIRE(clean_failure(lazy, files[fi].first));
    }
    spit(dir / files[fi].first, files[fi].second);
  }
  CHECK(lazy_open_ok > 0);  // some flips landed in content frames (the lazy path was exercised)
  CHECK(bank_state(*open_bank(model, dir, true)) == good_state);
}

namespace {

enum class Op { kSave, kAdd, kRemove, kCompact };

// Runs `op` on the bank in `dir` (the state of small_bank_dir). Uses no threads (safe in a forked child).
// kSave: `ram` (a bank never attached) is saved over the bank in dir.
Status run_op(const Model& model, Op op, const fs::path& dir, const EncodedDocuments& extra, MemoryBank* ram) {
  if (op == Op::kSave) return ram->save(dir.string());
  const bankfmt::Fingerprint& fp = bank_test::fingerprint_of(model);
  std::unique_ptr<MemoryBank> b;
  MSA_RETURN_IF_ERROR(MemoryBank::open(dir.string(), model.config(), &fp, BankOpenOptions(), &b));
  switch (op) {
    case Op::kSave: return Status::Ok();
    case Op::kAdd: return b->add(extra.records, extra.pooled);
    case Op::kRemove: return b->remove({2, 3});
    case Op::kCompact: return b->compact();
  }
  return Status::Ok();
}

uint64_t dir_state(const Model& model, const fs::path& dir) {
  auto b = open_bank(model, dir, true);
  return bank_state(*b);
}

}  // namespace

TEST_CASE("bank: SIGKILL at random points of save/add/remove/compact leaves the old or the new bank", "[bank]") {
  const Model& model = engine_test::micro();
  const fs::path base = small_bank_dir(model);
  const fs::path dir = engine_test::new_temp_dir("bank_crash");
  Encoder enc(model);
  EncodedDocuments extra;
  std::vector<std::string_view> texts = {"A fourth document about the Moon.", "And a fifth one on rivers."};
  ENGINE_REQUIRE_OK(enc.encode(texts, {40, 41}, &extra));
  const uint64_t old_state = dir_state(model, base);
  int trials = 0, saw_old = 0, saw_new = 0, mid_commit = 0;
  for (Op op : {Op::kSave, Op::kAdd, Op::kRemove, Op::kCompact}) {
    // The new state, and how long the operation takes here.
    copy_dir(base, dir);
    auto ram_for_parent = make_bank(model, PageDType::kInt8, 4);
    auto ram_for_child = make_bank(model, PageDType::kInt8, 4);
    const auto t0 = std::chrono::steady_clock::now();
    ENGINE_REQUIRE_OK(run_op(model, op, dir, extra, ram_for_parent.get()));
    const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    const uint64_t new_state = dir_state(model, dir);
    REQUIRE(new_state != old_state);
    std::mt19937 rng(static_cast<uint32_t>(op) * 7919u + 1);
    // From before the child starts to well after the operation would end in it (fork and copy-on-write slow the
    // child down), so kills land everywhere inside the operation and some children finish.
    std::uniform_real_distribution<double> delay(0.0, us * 3.0 + 2000.0);
    for (int t = 0; t < 55; ++t, ++trials) {
      copy_dir(base, dir);
      const pid_t pid = ::fork();
      REQUIRE(pid >= 0);
      if (pid == 0) {
        const Status s = run_op(model, op, dir, extra, ram_for_child.get());
        ::_exit(s.ok() ? 0 : 1);
      }
      std::this_thread::sleep_for(std::chrono::microseconds(static_cast<int64_t>(delay(rng))));
      ::kill(pid, SIGKILL);
      int wstatus = 0;
      ::waitpid(pid, &wstatus, 0);
      if (WIFEXITED(wstatus)) REQUIRE(WEXITSTATUS(wstatus) == 0);
      // Evidence that the kill landed inside a commit: a temporary file or a segment the manifest does not list.
      {
        BankFiles bf;
        REQUIRE(read_bank_files(dir.string(), false, &bf).ok());
        std::set<std::string> listed;
        for (const auto& r : bf.manifest.segments) listed.insert(r.name);
        for (const auto& e : fs::directory_iterator(dir)) {
          const std::string n = e.path().filename().string();
          if (n != "MANIFEST" && n != "LOCK" && listed.count(n) == 0) {
            ++mid_commit;
            break;
          }
        }
      }
      const uint64_t got = dir_state(model, dir);
      INFO("op " << static_cast<int>(op) << " trial " << t);
      REQUIRE((got == old_state || got == new_state));
      saw_old += got == old_state;
      saw_new += got == new_state;
    }
  }
  CHECK(trials >= 200);
  CHECK(saw_old > 0);
  CHECK(saw_new > 0);
  CHECK(mid_commit > 0);
  WARN("crash trials: " << trials << ", old state " << saw_old << ", new state " << saw_new
                        << ", killed inside a commit (leftover files) " << mid_commit);
}

TEST_CASE("bank: the C API (create bf16 by default, save, open, remove, compact, file info, verify)", "[bank]") {
  const fs::path ckpt = engine_test::write_checkpoint("micro", "", 5);
  msa_model* model = nullptr;
  REQUIRE(msa_model_load(ckpt.string().c_str(), nullptr, &model) == MSA_OK);
  msa_memory_params mp;
  msa_memory_params_init(&mp);
  CHECK(mp.page_dtype == MSA_PAGE_BF16);
  CHECK(mp.verify_on_open == 0);
  mp.page_dtype = 7;
  msa_memory* mem = nullptr;
  CHECK(msa_memory_create(model, &mp, &mem) == MSA_ERR_INVALID_ARGUMENT);
  REQUIRE(msa_memory_create(model, nullptr, &mem) == MSA_OK);
  msa_document docs[3] = {};
  for (int i = 0; i < 3; ++i) {
    docs[i].text = kTexts[static_cast<size_t>(i)].c_str();
    docs[i].text_len = kTexts[static_cast<size_t>(i)].size();
  }
  REQUIRE(msa_memory_add_documents(mem, docs, 3, nullptr, nullptr, nullptr) == MSA_OK);
  msa_memory_usage u;
  u.struct_size = sizeof u;
  REQUIRE(msa_memory_stats(mem, &u) == MSA_OK);
  CHECK(u.page_dtype == MSA_PAGE_BF16);
  CHECK(u.content_file_bytes == 0);
  const fs::path dir = engine_test::new_temp_dir("bank_capi");
  const std::string bank = (dir / "bank").string();
  REQUIRE(msa_memory_save(mem, bank.c_str()) == MSA_OK);
  msa_memory_free(mem);
  mem = nullptr;

  CHECK(msa_memory_open(model, (dir / "nope").string().c_str(), nullptr, &mem) == MSA_ERR_IO);
  CHECK(mem == nullptr);
  mp.page_dtype = MSA_PAGE_F32;  // ignored by open: the bank's dtype wins
  mp.verify_on_open = 1;
  REQUIRE(msa_memory_open(model, bank.c_str(), &mp, &mem) == MSA_OK);
  REQUIRE(msa_memory_stats(mem, &u) == MSA_OK);
  CHECK(u.page_dtype == MSA_PAGE_BF16);
  CHECK(u.n_documents == 3);
  CHECK(u.content_file_bytes > 0);
  int32_t state = -1;
  REQUIRE(msa_memory_document_state(mem, 1, &state) == MSA_OK);
  CHECK(state == 1);
  const uint64_t rm[1] = {1};
  REQUIRE(msa_memory_remove_documents(mem, rm, 1) == MSA_OK);
  CHECK(msa_memory_remove_documents(mem, rm, 1) == MSA_ERR_INVALID_ARGUMENT);
  CHECK(std::string(msa_last_error()).find("already removed") != std::string::npos);
  REQUIRE(msa_memory_document_state(mem, 1, &state) == MSA_OK);
  CHECK(state == 2);
  REQUIRE(msa_memory_document_state(mem, 77, &state) == MSA_OK);
  CHECK(state == 0);
  msa_memory_file_desc d;
  std::memset(&d, 0, sizeof d);
  d.struct_size = sizeof d;
  REQUIRE(msa_memory_file_info(bank.c_str(), 1, &d) == MSA_OK);
  CHECK(d.n_documents == 2);
  CHECK(d.n_removed == 1);
  CHECK(d.content_verified == 1);
  CHECK(d.page_dtype == MSA_PAGE_BF16);
  CHECK(d.n_router_layers == 1);
  CHECK(std::string(d.aux_loss_method) == "INFONCE_DECOUPLE");
  REQUIRE(msa_memory_compact(mem) == MSA_OK);
  REQUIRE(msa_memory_file_info(bank.c_str(), 0, &d) == MSA_OK);
  CHECK(d.n_removed == 0);
  CHECK(d.n_segments == 1);
  CHECK(msa_memory_verify(mem) == MSA_OK);
  msa_memory_free(mem);
  mem = nullptr;

  msa_model* other = nullptr;
  const fs::path ckpt2 = engine_test::write_checkpoint("micro", "", 6);
  REQUIRE(msa_model_load(ckpt2.string().c_str(), nullptr, &other) == MSA_OK);
  CHECK(msa_memory_open(other, bank.c_str(), nullptr, &mem) == MSA_ERR_INVALID_ARGUMENT);
  CHECK(std::string(msa_last_error()).find("weights_digest") != std::string::npos);
  msa_model_free(other);
  msa_model_free(model);
}

TEST_CASE("bank: readers keep routing while an attached bank commits adds and removes", "[bank]") {
  const Model& model = engine_test::micro();
  auto bank = make_bank(model, PageDType::kBF16, 3);
  const fs::path dir = engine_test::new_temp_dir("bank_conc");
  ENGINE_REQUIRE_OK(bank->save(dir.string()));
  std::atomic<bool> stop{false};
  std::atomic<int> routes{0}, failures{0};
  auto reader = [&]() {
    while (!stop.load()) {
      Session s(model, bank.get());
      RouteOptions o;
      o.doc_top_k = 2;
      RouteResult r;
      if (!s.route(kQuestion, o, &r).ok() || r.layers.empty() || r.layers[0].top.size() != 2) ++failures;
      ++routes;
      // A pause between calls: pthread rwlocks prefer readers, and two readers back to back could starve the
      // writer (that would be the test's doing, not the bank's).
      std::this_thread::sleep_for(std::chrono::microseconds(300));
    }
  };
  std::thread t1(reader), t2(reader);
  Encoder enc(model);
  for (size_t i = 3; i < kTexts.size(); ++i) {
    std::vector<std::string_view> one = {kTexts[i]};
    std::vector<uint64_t> id = {900 + i};
    ENGINE_REQUIRE_OK(enc.add_documents(bank.get(), one, &id));
  }
  ENGINE_REQUIRE_OK(bank->remove({900 + 3}));
  while (routes.load() < 10) std::this_thread::yield();
  stop.store(true);
  t1.join();
  t2.join();
  CHECK(failures.load() == 0);
  auto reopened = open_bank(model, dir, true);
  CHECK(reopened->n_live_documents() == 5);
  CHECK(bank_state(*reopened) == bank_state(*bank));
}
