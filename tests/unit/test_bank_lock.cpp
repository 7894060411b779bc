// Writer safety of memory bank directories (docs/FORMAT.md "Writers"): the process-wide writer lock on BANK/LOCK,
// the manifest check before every commit, id reservation for concurrent adds, and cleanup after a failed write
// (a real EFBIG from RLIMIT_FSIZE in a forked child: the kernel refuses the write exactly as on a full disk), for
// banks and for core/atomic_file.h, the atomic-write helper every writer of the library uses.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/atomic_file.h"
#include "engine/encoder.h"
#include "memory/bank_fingerprint.h"
#include "memory/memory_bank.h"
#include "model/safetensors.h"
#include "test_bank_common.h"
#include "test_engine_common.h"

using namespace msa;
namespace fs = std::filesystem;

namespace {

using bank_test::kTexts;

// In a forked child: writes past `bytes` bytes fail with EFBIG (SIGXFSZ ignored), as writes fail with ENOSPC
// on a full disk. False when the limit cannot be set.
bool limit_file_size(rlim_t bytes) {
  ::signal(SIGXFSZ, SIG_IGN);
  struct rlimit rl;
  ::getrlimit(RLIMIT_FSIZE, &rl);
  rl.rlim_cur = bytes;
  return ::setrlimit(RLIMIT_FSIZE, &rl) == 0;
}

// The end of such a child: back to the hard limit, `log` written to msg_file for the parent, exit with `code`.
[[noreturn]] void child_exit(const fs::path& msg_file, const std::string& log, int code) {
  struct rlimit rl;
  ::getrlimit(RLIMIT_FSIZE, &rl);
  rl.rlim_cur = rl.rlim_max;
  ::setrlimit(RLIMIT_FSIZE, &rl);
  engine_test::write_text(msg_file, log);
  ::_exit(code);
}

// A bank of kTexts[0..n) with ids 100, 101, ..., saved to a fresh directory (the handle is freed: no writer is
// left behind).
fs::path saved_bank(const Model& model, const std::string& tag, size_t n, PageDType dtype = PageDType::kBF16) {
  std::unique_ptr<MemoryBank> bank;
  ENGINE_REQUIRE_OK(create_memory_bank(model, nullptr, &bank, dtype));
  std::vector<std::string_view> v(kTexts.begin(), kTexts.begin() + static_cast<std::ptrdiff_t>(n));
  std::vector<uint64_t> ids;
  for (size_t i = 0; i < n; ++i) ids.push_back(100 + i);
  Encoder enc(model);
  ENGINE_REQUIRE_OK(enc.add_documents(bank.get(), v, &ids));
  const fs::path dir = engine_test::new_temp_dir(tag);
  ENGINE_REQUIRE_OK(bank->save(dir.string()));
  return dir;
}

Status open_dir(const Model& model, const fs::path& dir, bool verify, std::unique_ptr<MemoryBank>* out) {
  BankOpenOptions o;
  o.verify_content = verify;
  return MemoryBank::open(dir.string(), model.config(), &bank_test::fingerprint_of(model), o, out);
}

std::unique_ptr<MemoryBank> open_bank(const Model& model, const fs::path& dir, bool verify = false) {
  std::unique_ptr<MemoryBank> b;
  ENGINE_REQUIRE_OK(open_dir(model, dir, verify, &b));
  return b;
}

using bank_test::state_of;

// Live ids of a bank, ascending.
std::vector<uint64_t> live_ids(const MemoryBank& b) {
  std::vector<uint64_t> ids;
  for (int64_t i = 0; i < b.n_documents(); ++i) {
    if (!b.is_removed(i)) ids.push_back(b.document(i).id);
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

// Files of dir that are neither MANIFEST, LOCK nor a segment the manifest lists (leftovers of a failed write).
std::vector<std::string> stray_files(const fs::path& dir) {
  BankFiles bf;
  std::set<std::string> listed;
  if (read_bank_files(dir.string(), false, &bf).ok()) {
    for (const auto& r : bf.manifest.segments) listed.insert(r.name);
  }
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n != "MANIFEST" && n != "LOCK" && listed.count(n) == 0) out.push_back(n);
  }
  return out;
}

bool has_tmp(const fs::path& dir) {
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n.size() >= 4 && n.compare(n.size() - 4, 4, ".tmp") == 0) return true;
  }
  return false;
}

EncodedDocuments encode_docs(const Model& model, const std::vector<std::string>& texts,
                             const std::vector<uint64_t>& ids) {
  Encoder enc(model);
  std::vector<std::string_view> v(texts.begin(), texts.end());
  EncodedDocuments out;
  ENGINE_REQUIRE_OK(enc.encode(v, ids, &out));
  return out;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Waits for a forked child; its exit code (or 1000 + signal).
int wait_child(pid_t pid) {
  int ws = 0;
  ::waitpid(pid, &ws, 0);
  if (WIFEXITED(ws)) return WEXITSTATUS(ws);
  return WIFSIGNALED(ws) ? 1000 + WTERMSIG(ws) : 2000;
}

}  // namespace

TEST_CASE("bank lock: two handles of one process writing one directory lose nothing", "[bank][lock]") {
  const Model& model = engine_test::micro();
  const fs::path dir = saved_bank(model, "lock_two_handles", 2);
  auto h1 = open_bank(model, dir);
  auto h2 = open_bank(model, dir);
  Encoder enc(model);
  std::vector<std::string_view> a = {kTexts[2]}, b = {kTexts[3]};
  std::vector<uint64_t> ida = {200}, idb = {201};
  ENGINE_REQUIRE_OK(enc.add_documents(h1.get(), a, &ida));
  // h2 was opened before h1's commit: its view of the bank is stale. Committing from it would drop h1's segment
  // (the old code reused h1's segment name and listed only its own): it is refused, naming the directory.
  const Status s2 = enc.add_documents(h2.get(), b, &idb);
  INFO(s2.to_string());
  CHECK(s2.code() == StatusCode::kBusy);
  CHECK(contains(s2.message(), dir.string()));
  CHECK(contains(s2.message(), "reopen"));
  CHECK(h2->remove({100}).code() == StatusCode::kBusy);
  CHECK(h2->compact().code() == StatusCode::kBusy);
  CHECK(h2->find(201) < 0);
  {
    auto check = open_bank(model, dir, true);
    CHECK(live_ids(*check) == std::vector<uint64_t>{100, 101, 200});
    CHECK(stray_files(dir).empty());
  }
  // h1 keeps writing; a handle opened now sees everything and writes after it.
  ENGINE_REQUIRE_OK(h1->remove({100}));
  h2 = open_bank(model, dir);
  ENGINE_REQUIRE_OK(enc.add_documents(h2.get(), b, &idb));
  CHECK(h1->remove({101}).code() == StatusCode::kBusy);  // now h1 is the stale one
  auto final_bank = open_bank(model, dir, true);
  CHECK(live_ids(*final_bank) == std::vector<uint64_t>{101, 200, 201});
  CHECK(state_of(*final_bank) == state_of(*h2));
  CHECK(stray_files(dir).empty());
}

TEST_CASE("bank lock: a compact never deletes segments another handle of the process still maps", "[bank][lock]") {
  const Model& model = engine_test::micro();
  const fs::path dir = saved_bank(model, "lock_in_use", 3);
  auto writer = open_bank(model, dir);
  ENGINE_REQUIRE_OK(writer->remove({101}));
  auto reader = open_bank(model, dir);  // maps the current segment
  const uint64_t reader_state = state_of(*reader);
  BankFiles before;
  ENGINE_REQUIRE_OK(read_bank_files(dir.string(), false, &before));
  REQUIRE(before.manifest.segments.size() == 1);
  const std::string old_seg = before.manifest.segments[0].name;
  ENGINE_REQUIRE_OK(writer->compact());
  // The compacted bank lists only its new segment; the reader's mapped one stays on disk while the reader lives.
  BankFiles after;
  ENGINE_REQUIRE_OK(read_bank_files(dir.string(), true, &after));
  REQUIRE(after.manifest.segments.size() == 1);
  CHECK(after.manifest.segments[0].name != old_seg);
  CHECK(fs::exists(dir / old_seg));
  CHECK(state_of(*reader) == reader_state);
  CHECK(reader->verify().ok());
  // Once the reader is gone, the next commit collects it.
  reader.reset();
  ENGINE_REQUIRE_OK(writer->remove({102}));
  CHECK_FALSE(fs::exists(dir / old_seg));
  CHECK(stray_files(dir).empty());
}

TEST_CASE("bank lock: a second process gets kBusy naming the directory, and the bank keeps every commit",
          "[bank][lock]") {
  const Model& model = engine_test::micro();
  const fs::path dir = saved_bank(model, "lock_fork", 2);
  // Encoded before forking: the children use no threads (only the forking thread exists in a child).
  const EncodedDocuments child_docs = encode_docs(model, {kTexts[4]}, {300});
  const fs::path msg_file = dir.parent_path() / (dir.filename().string() + ".child_message");

  auto writer = open_bank(model, dir);
  Encoder enc(model);
  std::vector<std::string_view> a = {kTexts[2]};
  std::vector<uint64_t> ida = {200};
  ENGINE_REQUIRE_OK(enc.add_documents(writer.get(), a, &ida));  // this process now writes the bank

  // A second process: reading works, every write is refused with kBusy naming the directory.
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int code = 0;
    std::unique_ptr<MemoryBank> b;
    if (!open_dir(model, dir, true, &b).ok()) ::_exit(10);
    if (b->find(200) < 0 || !b->verify().ok()) ::_exit(11);
    const Status add = b->add(child_docs.records, child_docs.pooled);
    engine_test::write_text(msg_file, add.message());
    if (add.code() != StatusCode::kBusy) code |= 1;
    if (!contains(add.message(), dir.string())) code |= 2;
    if (!contains(add.message(), std::to_string(::getppid()))) code |= 4;  // the holder's pid
    if (b->remove({100}).code() != StatusCode::kBusy) code |= 8;
    if (b->compact().code() != StatusCode::kBusy) code |= 16;
    std::unique_ptr<MemoryBank> fresh;
    if (create_memory_bank(model, nullptr, &fresh).ok() && fresh->save(dir.string()).code() != StatusCode::kBusy) {
      code |= 32;
    }
    ::_exit(code);
  }
  const int rc = wait_child(pid);
  INFO("child exit " << rc << ", its add said: " << engine_test::read_text(msg_file));
  CHECK(rc == 0);

  // The first process is unaffected and keeps committing.
  std::vector<std::string_view> c = {kTexts[3]};
  std::vector<uint64_t> idc = {201};
  ENGINE_REQUIRE_OK(enc.add_documents(writer.get(), c, &idc));
  ENGINE_REQUIRE_OK(writer->remove({100}));
  auto stale = open_bank(model, dir);  // opened now, written after the other process's commit below
  writer.reset();                      // the lock is released with the last writing handle

  // Now another process may write.
  pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    std::unique_ptr<MemoryBank> b;
    if (!open_dir(model, dir, false, &b).ok()) ::_exit(10);
    const Status add = b->add(child_docs.records, child_docs.pooled);
    engine_test::write_text(msg_file, add.message());
    ::_exit(add.ok() ? 0 : 1);
  }
  const int rc2 = wait_child(pid);
  INFO("second child exit " << rc2 << ": " << engine_test::read_text(msg_file));
  CHECK(rc2 == 0);
  // A handle opened before that commit is stale: refused (kBusy), the bank is unchanged.
  CHECK(stale->remove({101}).code() == StatusCode::kBusy);

  auto final_bank = open_bank(model, dir, true);
  CHECK(live_ids(*final_bank) == std::vector<uint64_t>{101, 200, 201, 300});
  CHECK(final_bank->verify().ok());
  CHECK(stray_files(dir).empty());
}

TEST_CASE("bank lock: concurrent Encoder::add_documents with automatic ids never collide", "[bank][lock][encoder]") {
  const Model& model = engine_test::micro();
  for (bool attached : {false, true}) {
    INFO("attached " << attached);
    std::unique_ptr<MemoryBank> bank;
    ENGINE_REQUIRE_OK(create_memory_bank(model, nullptr, &bank, PageDType::kF32));
    fs::path dir;
    if (attached) {
      dir = engine_test::new_temp_dir("lock_threads");
      ENGINE_REQUIRE_OK(bank->save(dir.string()));
    }
    constexpr int kThreads = 4, kRounds = 3;
    std::mutex mu;
    std::condition_variable cv;
    int ready = 0;
    std::vector<Status> status(kThreads * kRounds);
    std::map<uint64_t, std::string> text_of;  // id -> text, from every thread's assigned ids
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t]() {
        Encoder enc(model);
        {
          std::unique_lock<std::mutex> lock(mu);
          ++ready;
          cv.notify_all();
          cv.wait(lock, [&]() { return ready == kThreads; });
        }
        for (int r = 0; r < kRounds; ++r) {
          const std::vector<std::string> texts = {
              "Thread " + std::to_string(t) + " round " + std::to_string(r) + ": " + kTexts[static_cast<size_t>(t)],
              kTexts[static_cast<size_t>(r + 2)] + " (" + std::to_string(t) + ")"};
          std::vector<std::string_view> v(texts.begin(), texts.end());
          std::vector<uint64_t> got;
          const Status s = enc.add_documents(bank.get(), v, nullptr, &got);
          std::lock_guard<std::mutex> lock(mu);
          status[static_cast<size_t>(t * kRounds + r)] = s;
          if (s.ok()) {
            for (size_t i = 0; i < got.size(); ++i) text_of.emplace(got[i], texts[i]);
          }
        }
      });
    }
    for (std::thread& th : threads) th.join();
    for (const Status& s : status) {
      INFO(s.to_string());
      CHECK(s.ok());
    }
    // Every document present, once, with a distinct id, ids 0 .. n-1.
    const size_t n = static_cast<size_t>(kThreads * kRounds * 2);
    REQUIRE(text_of.size() == n);
    REQUIRE(bank->n_documents() == static_cast<int64_t>(n));
    std::vector<uint64_t> want(n);
    for (size_t i = 0; i < n; ++i) want[i] = i;
    CHECK(live_ids(*bank) == want);
    // Each stored document is exactly what a sequential encode with its id gives (the id is in the encoded text).
    std::unique_ptr<MemoryBank> seq;
    ENGINE_REQUIRE_OK(create_memory_bank(model, nullptr, &seq, PageDType::kF32));
    Encoder enc(model);
    for (const auto& [id, text] : text_of) {
      std::vector<std::string_view> one = {text};
      std::vector<uint64_t> one_id = {id};
      ENGINE_REQUIRE_OK(enc.add_documents(seq.get(), one, &one_id));
    }
    for (const auto& [id, text] : text_of) {
      INFO("id " << id);
      const int64_t i = bank->find(id), j = seq->find(id);
      REQUIRE(i >= 0);
      REQUIRE(j >= 0);
      CHECK(bank->document(i).text == text);
      CHECK(bank->document(i).n_tokens == seq->document(j).n_tokens);
      const int64_t nc = bank->document(i).n_chunks;
      REQUIRE(nc == seq->document(j).n_chunks);
      for (int l = 0; l < bank->n_router_layers(); ++l) {
        const size_t sz = static_cast<size_t>(nc * bank->width());
        std::vector<float> k1(sz), v1(sz), k2(sz), v2(sz), r1(sz), r2(sz);
        ENGINE_REQUIRE_OK(bank->read_pages(l, i, k1.data(), v1.data()));
        ENGINE_REQUIRE_OK(seq->read_pages(l, j, k2.data(), v2.data()));
        decode_routing_rows(*bank, l, bank->document(i).chunk_begin, nc, r1.data());
        decode_routing_rows(*seq, l, seq->document(j).chunk_begin, nc, r2.data());
        CHECK(std::memcmp(k1.data(), k2.data(), sz * 4) == 0);
        CHECK(std::memcmp(v1.data(), v2.data(), sz * 4) == 0);
        CHECK(std::memcmp(r1.data(), r2.data(), sz * 4) == 0);
      }
    }
    if (attached) {
      auto reopened = open_bank(model, dir, true);
      CHECK(live_ids(*reopened) == want);
      CHECK(state_of(*reopened) == state_of(*bank));
      CHECK(stray_files(dir).empty());
    }
  }
}

TEST_CASE("bank: a write that fails for lack of space (EFBIG) leaves no temporary file and no change",
          "[bank][lock]") {
  const Model& model = engine_test::micro();
  const fs::path dir = saved_bank(model, "disk_full", 2, PageDType::kF32);
  // A long document: its segment is several times the size of the manifest.
  std::string big;
  for (int i = 0; i < 40; ++i) big += kTexts[static_cast<size_t>(i) % kTexts.size()] + " ";
  const EncodedDocuments extra = encode_docs(model, {big}, {500});
  // Sizes: the manifest, and the segment the add would write (measured on a copy).
  const fs::path probe = engine_test::new_temp_dir("disk_full_probe");
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().filename() != "LOCK") fs::copy_file(e.path(), probe / e.path().filename());
  }
  const uint64_t manifest_bytes = fs::file_size(dir / "MANIFEST");
  uint64_t segment_bytes = 0;
  {
    auto p = open_bank(model, probe);
    ENGINE_REQUIRE_OK(p->add(extra.records, extra.pooled));
    BankFiles bf;
    ENGINE_REQUIRE_OK(read_bank_files(probe.string(), false, &bf));
    segment_bytes = bf.segments.back()->file_size();
  }
  INFO("manifest " << manifest_bytes << " B, new segment " << segment_bytes << " B");
  REQUIRE(segment_bytes > 2 * manifest_bytes + 4096);
  const rlim_t room = static_cast<rlim_t>(manifest_bytes + 2048);  // a manifest fits, the segment does not
  const uint64_t before = state_of(*open_bank(model, dir, true));
  REQUIRE(before != 0);
  const fs::path msg_file = dir.parent_path() / (dir.filename().string() + ".child_message");

  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    if (!limit_file_size(room)) ::_exit(9);
    std::unique_ptr<MemoryBank> b;
    if (!open_dir(model, dir, false, &b).ok()) ::_exit(10);
    int code = 0;
    const Status add = b->add(extra.records, extra.pooled);
    std::string log = add.to_string() + "\n";
    if (add.code() != StatusCode::kIo || !contains(add.message(), "disk full")) code |= 1;
    if (has_tmp(dir)) code |= 2;                        // the partial segment is gone
    if (b->find(500) >= 0 || state_of(*b) != before) code |= 4;  // the handle is unchanged
    {
      std::unique_ptr<MemoryBank> again;
      if (!open_dir(model, dir, true, &again).ok() || state_of(*again) != before) code |= 8;  // so is the disk
    }
    // A manifest-only change fits: it succeeds.
    const Status rm = b->remove({100});
    log += rm.to_string() + "\n";
    if (!rm.ok()) code |= 16;
    // With no room even for a manifest, the remove fails cleanly too: no MANIFEST temporary, nothing changed.
    limit_file_size(64);
    const Status rm2 = b->remove({101});
    log += rm2.to_string() + "\n";
    if (rm2.code() != StatusCode::kIo || !contains(rm2.message(), "disk full")) code |= 32;
    if (has_tmp(dir)) code |= 64;
    if (b->find(101) < 0) code |= 128;
    child_exit(msg_file, log, code);
  }
  const int rc = wait_child(pid);
  INFO("child exit " << rc << "; it saw:\n" << engine_test::read_text(msg_file));
  CHECK(rc == 0);
  CHECK_FALSE(has_tmp(dir));
  CHECK(stray_files(dir).empty());
  BankFiles bf;
  ENGINE_REQUIRE_OK(read_bank_files(dir.string(), true, &bf));
  auto after = open_bank(model, dir, true);
  CHECK(live_ids(*after) == std::vector<uint64_t>{101});
  CHECK(after->verify().ok());
}

TEST_CASE("atomic file: a failed write (EFBIG) removes its temporary, keeps the old file and says disk full",
          "[core][lock]") {
  const fs::path dir = engine_test::new_temp_dir("atomic_full");
  const std::string path = (dir / "model.safetensors").string();
  const std::vector<float> small(16, 1.0f), big(16384, 2.0f);  // 64 B and 64 KiB of data
  ENGINE_REQUIRE_OK(write_safetensors(path, {{"w", DType::kF32, {16}, small.data()}}, {}));
  const std::string old_bytes = engine_test::read_text(path);
  auto only_the_file = [&]() {
    for (const auto& e : fs::directory_iterator(dir)) {
      if (e.path().filename() != "model.safetensors") return false;
    }
    return true;
  };
  const fs::path msg_file = dir.parent_path() / (dir.filename().string() + ".child_message");
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    if (!limit_file_size(4096)) ::_exit(9);
    int code = 0;
    const Status st = write_safetensors(path, {{"w", DType::kF32, {16384}, big.data()}}, {});
    std::string log = st.to_string() + "\n";
    if (st.code() != StatusCode::kIo || !contains(st.message(), "disk full")) code |= 1;
    if (!only_the_file() || engine_test::read_text(path) != old_bytes) code |= 2;
    {
      AtomicFile f;  // abandoned before commit: the destructor removes the temporary
      if (!f.open((dir / "other").string()).ok() || !f.write(big.data(), 100).ok()) code |= 4;
      if (!fs::exists(f.temp_path())) code |= 8;
    }
    if (!only_the_file()) code |= 16;
    AtomicFile g;  // a write past the limit fails and removes the temporary at once
    const Status w = g.open((dir / "other").string()).ok() ? g.write(big.data(), big.size() * 4) : Status::Ok();
    log += w.to_string() + "\n";
    if (w.code() != StatusCode::kIo || !contains(w.message(), "disk full") || !only_the_file()) code |= 32;
    child_exit(msg_file, log, code);
  }
  const int rc = wait_child(pid);
  INFO("child exit " << rc << "; it saw:\n" << engine_test::read_text(msg_file));
  CHECK(rc == 0);
  CHECK(only_the_file());
  CHECK(engine_test::read_text(path) == old_bytes);
  // And a successful commit replaces the file.
  ENGINE_REQUIRE_OK(atomic_write_file(path, {{"abc", 3}, {"de", 2}}));
  CHECK(engine_test::read_text(path) == "abcde");
  CHECK(only_the_file());
}
