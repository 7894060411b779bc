// MemoryBank: checked construction, atomic add (a bad batch leaves the bank exactly as it was), ids, chunk
// ranges and the per-layer tiers, stats.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/limits.h"
#include "core/thread_pool.h"
#include "memory/memory_bank.h"
#include "test_bank_common.h"

namespace {

using msa::DocumentRecord;
using msa::MemoryBank;
using msa::ModelConfig;
using msa::PooledDocument;
using msa::StatusCode;

// 3 decoder layers, router layers 0 and 2, 2 kv heads x head_dim 3 (width 6), pooling 4.
ModelConfig small_config() {
  ModelConfig c;
  c.model_type = "msa";
  c.num_hidden_layers = 3;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 3;
  c.msa.present = true;
  c.msa.router_layers = {0, 2};
  c.msa.pooling_kernel_size = 4;
  return c;
}

constexpr int64_t kWidth = 6;
constexpr int kRouterLayers = 2;

std::unique_ptr<MemoryBank> make_bank(msa::PageDType dtype = msa::PageDType::kF32) {
  const ModelConfig c = small_config();
  std::vector<std::vector<float>> tk(3, std::vector<float>(3 * kWidth, 0.5f));
  std::vector<std::vector<float>> tv(3, std::vector<float>(3 * kWidth, -0.5f));
  std::unique_ptr<MemoryBank> bank;
  REQUIRE(MemoryBank::create(c, tk, tv, &bank, dtype).ok());
  return bank;
}

// A document of n_tokens tokens whose pooled values encode (tag, tensor, layer, element) so tests can check
// where each value landed: k = tag + 0.001*l..., v = -k, rk = k + 1000.
std::pair<DocumentRecord, PooledDocument> make_doc(uint64_t id, int64_t n_tokens, float tag) {
  DocumentRecord d;
  d.id = id;
  d.text = "document " + std::to_string(id);
  d.n_tokens = n_tokens;
  PooledDocument p;
  p.n_tokens = n_tokens;
  p.n_chunks = (n_tokens + 3) / 4;
  for (int l = 0; l < kRouterLayers; ++l) {
    std::vector<float> k(static_cast<size_t>(p.n_chunks * kWidth));
    for (size_t i = 0; i < k.size(); ++i) k[i] = tag + 0.01f * static_cast<float>(l) + 1e-4f * static_cast<float>(i);
    std::vector<float> v(k), rk(k);
    for (float& x : v) x = -x;
    for (float& x : rk) x += 1000.0f;
    p.k.push_back(k);
    p.v.push_back(v);
    p.rk.push_back(rk);
  }
  return {d, p};
}

struct Batch {
  std::vector<DocumentRecord> docs;
  std::vector<PooledDocument> pooled;
  void add(uint64_t id, int64_t n_tokens, float tag) {
    auto dp = make_doc(id, n_tokens, tag);
    docs.push_back(dp.first);
    pooled.push_back(dp.second);
  }
};

// Everything observable about a bank, for "unchanged" checks.
struct Snapshot {
  std::vector<uint64_t> ids;
  std::vector<std::vector<float>> keys, k, v;
  std::vector<std::vector<int32_t>> chunk_doc;
  int64_t n_chunks = 0, n_tokens = 0, routing_bytes = 0, content_bytes = 0, text_bytes = 0;
  uint64_t next_id = 0;
  bool operator==(const Snapshot& o) const {
    return ids == o.ids && keys == o.keys && k == o.k && v == o.v && chunk_doc == o.chunk_doc &&
           n_chunks == o.n_chunks && n_tokens == o.n_tokens && routing_bytes == o.routing_bytes &&
           content_bytes == o.content_bytes && text_bytes == o.text_bytes && next_id == o.next_id;
  }
};

Snapshot snapshot(const MemoryBank& b) {
  Snapshot s;
  for (int64_t i = 0; i < b.n_documents(); ++i) s.ids.push_back(b.document(i).id);
  for (int l = 0; l < b.n_router_layers(); ++l) {
    s.keys.push_back(b.routing(l).keys);
    s.chunk_doc.push_back(b.routing(l).chunk_doc);
    s.k.push_back(b.content(l).k);
    s.v.push_back(b.content(l).v);
  }
  const msa::MemoryStats st = b.stats();
  s.n_chunks = st.n_chunks;
  s.n_tokens = st.n_tokens;
  s.routing_bytes = st.routing_bytes;
  s.content_bytes = st.content_bytes;
  s.text_bytes = st.text_bytes;
  s.next_id = b.next_id();
  return s;
}

// A fresh directory under the system temp dir, removed with its contents at the end of the scope.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& tag) {
    static int counter = 0;
    path = std::filesystem::temp_directory_path() /
           ("msa_memory_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" + tag);
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string str() const { return path.string(); }
};

}  // namespace

TEST_CASE("MemoryBank::create validates the configuration and templates", "[memory]") {
  const ModelConfig c = small_config();
  std::vector<std::vector<float>> tk(3, std::vector<float>(3 * kWidth)), tv = tk;
  std::unique_ptr<MemoryBank> bank;
  REQUIRE(MemoryBank::create(c, tk, tv, &bank).ok());
  CHECK(bank->width() == kWidth);
  CHECK(bank->n_router_layers() == 2);
  CHECK(bank->n_documents() == 0);
  CHECK(bank->next_id() == 0);
  CHECK(bank->template_len() == 3);

  CHECK(MemoryBank::create(c, tk, tv, nullptr).code() == StatusCode::kInvalidArgument);
  auto short_tk = tk;
  short_tk.pop_back();
  CHECK(MemoryBank::create(c, short_tk, tv, &bank).code() == StatusCode::kInvalidArgument);
  auto bad_tv = tv;
  bad_tv[1].push_back(0.0f);
  CHECK(MemoryBank::create(c, tk, bad_tv, &bank).code() == StatusCode::kInvalidArgument);
  ModelConfig plain = c;
  plain.msa.present = false;
  CHECK(MemoryBank::create(plain, tk, tv, &bank).code() == StatusCode::kInvalidArgument);
  ModelConfig no_pool = c;
  no_pool.msa.pooling_kernel_size = 0;
  CHECK(MemoryBank::create(no_pool, tk, tv, &bank).code() == StatusCode::kInvalidArgument);
  ModelConfig bad_layer = c;
  bad_layer.msa.router_layers = {0, 3};
  CHECK(MemoryBank::create(bad_layer, tk, tv, &bank).code() == StatusCode::kInvalidArgument);
}

TEST_CASE("MemoryBank::add appends documents, chunk ranges and every tier", "[memory]") {
  auto bank = make_bank();
  Batch b1;
  b1.add(10, 9, 1.0f);  // 3 chunks (4 + 4 + 1)
  b1.add(3, 4, 2.0f);   // 1 chunk
  REQUIRE(bank->add(b1.docs, b1.pooled).ok());
  Batch b2;
  b2.add(7, 1, 3.0f);  // 1 chunk
  b2.add(4, 8, 4.0f);  // 2 chunks
  REQUIRE(bank->add(b2.docs, b2.pooled).ok());

  REQUIRE(bank->n_documents() == 4);
  const int64_t begins[] = {0, 3, 4, 5}, counts[] = {3, 1, 1, 2};
  const uint64_t ids[] = {10, 3, 7, 4};
  for (int64_t i = 0; i < 4; ++i) {
    const DocumentRecord& d = bank->document(i);
    CHECK(d.id == ids[i]);
    CHECK(d.chunk_begin == begins[i]);
    CHECK(d.n_chunks == counts[i]);
    CHECK(d.text == "document " + std::to_string(ids[i]));
    CHECK(bank->find(ids[i]) == i);
  }
  CHECK(bank->find(5) == -1);
  CHECK(bank->next_id() == 11);

  const std::vector<int32_t> want_doc = {0, 0, 0, 1, 2, 3, 3};
  const std::vector<const PooledDocument*> order = {&b1.pooled[0], &b1.pooled[1], &b2.pooled[0], &b2.pooled[1]};
  for (int l = 0; l < kRouterLayers; ++l) {
    CHECK(bank->routing(l).chunk_doc == want_doc);
    CHECK(bank->routing(l).n_chunks() == 7);
    std::vector<float> keys, k, v;
    for (const PooledDocument* p : order) {
      keys.insert(keys.end(), p->rk[static_cast<size_t>(l)].begin(), p->rk[static_cast<size_t>(l)].end());
      k.insert(k.end(), p->k[static_cast<size_t>(l)].begin(), p->k[static_cast<size_t>(l)].end());
      v.insert(v.end(), p->v[static_cast<size_t>(l)].begin(), p->v[static_cast<size_t>(l)].end());
    }
    CHECK(bank->routing(l).keys == keys);
    CHECK(bank->content(l).k == k);
    CHECK(bank->content(l).v == v);
  }
  CHECK(bank->template_k(1).size() == 3 * kWidth);
  CHECK(bank->template_v(2)[0] == -0.5f);

  const msa::MemoryStats st = bank->stats();
  CHECK(st.n_documents == 4);
  CHECK(st.n_chunks == 7);
  CHECK(st.n_tokens == 9 + 4 + 1 + 8);
  // Per router layer: 7 chunks x 6 floats of routing keys + 7 int32 chunk->doc entries; K and V 7 x 6 each.
  CHECK(st.routing_bytes == kRouterLayers * (7 * kWidth * 4 + 7 * 4));
  CHECK(st.content_bytes == kRouterLayers * (2 * 7 * kWidth * 4));
  CHECK(st.text_bytes == 11 + 3 * 10);  // "document 10" and three "document N"
  CHECK(st.template_bytes == 3 * 2 * 3 * kWidth * 4);
}

TEST_CASE("MemoryBank::add is all-or-none on bad input", "[memory]") {
  auto bank = make_bank();
  Batch good;
  good.add(1, 5, 1.0f);
  good.add(2, 3, 2.0f);
  REQUIRE(bank->add(good.docs, good.pooled).ok());
  const Snapshot before = snapshot(*bank);

  // Every batch below has a valid first document and one bad one after it.
  auto base = [] {
    Batch b;
    b.add(20, 6, 5.0f);
    b.add(21, 7, 6.0f);
    return b;
  };
  std::vector<std::pair<std::string, Batch>> cases;
  {
    Batch b = base();
    b.pooled.pop_back();
    cases.emplace_back("records and pooled disagree in count", b);
  }
  {
    Batch b = base();
    b.docs[1].id = 2;
    cases.emplace_back("id already in the bank", b);
  }
  {
    Batch b = base();
    b.docs[1].id = 20;
    cases.emplace_back("id twice in the batch", b);
  }
  {
    Batch b = base();
    b.docs[1].id = std::numeric_limits<uint64_t>::max();
    cases.emplace_back("reserved id", b);
  }
  {
    Batch b = base();
    b.pooled[1].n_chunks = 3;  // 7 tokens / 4 -> 2 chunks
    cases.emplace_back("n_chunks != ceil(n_tokens / P)", b);
  }
  {
    Batch b = base();
    b.docs[1].n_tokens = 8;
    cases.emplace_back("record and pooled token counts differ", b);
  }
  {
    Batch b = base();
    b.docs[1].n_tokens = 0;
    b.pooled[1].n_tokens = 0;
    b.pooled[1].n_chunks = 0;
    for (auto* t : {&b.pooled[1].k, &b.pooled[1].v, &b.pooled[1].rk}) {
      for (auto& l : *t) l.clear();
    }
    cases.emplace_back("empty document", b);
  }
  {
    Batch b = base();
    b.pooled[1].rk.pop_back();
    cases.emplace_back("routing keys for one router layer only", b);
  }
  {
    Batch b = base();
    b.pooled[1].k[1].pop_back();
    cases.emplace_back("K of one layer one float short", b);
  }
  {
    Batch b = base();
    b.pooled[1].v[0].push_back(0.0f);
    cases.emplace_back("V of one layer one float long", b);
  }
  {
    Batch b = base();
    b.pooled[1].rk[1][3] = std::nanf("");
    cases.emplace_back("NaN routing key", b);
  }
  {
    Batch b = base();
    b.pooled[1].v[0][0] = std::numeric_limits<float>::infinity();
    cases.emplace_back("infinite value", b);
  }
  for (auto& c : cases) {
    INFO(c.first);
    const msa::Status st = bank->add(c.second.docs, c.second.pooled);
    CHECK(st.code() == StatusCode::kInvalidArgument);
    CHECK_FALSE(st.message().empty());
    CHECK(snapshot(*bank) == before);
  }
  // The unmodified batch goes in.
  Batch b = base();
  REQUIRE(bank->add(b.docs, b.pooled).ok());
  CHECK(bank->n_documents() == 4);
  CHECK(bank->next_id() == 22);
  // An empty batch is a no-op.
  CHECK(bank->add({}, {}).ok());
  CHECK(bank->n_documents() == 4);
}

TEST_CASE("MemoryBank::reserve_ids holds ids for an add in progress", "[memory]") {
  auto bank = make_bank();
  msa::IdReservation r1, r2, r3;
  REQUIRE(bank->reserve_ids(2, &r1).ok());
  CHECK(r1.active());
  CHECK(r1.ids() == std::vector<uint64_t>{0, 1});
  CHECK(bank->next_id() == 2);
  CHECK(bank->n_reserved_ids() == 2);
  // Explicit ids: refused when reserved by another add, a duplicate, UINT64_MAX; all or none.
  msa::Status st = bank->reserve_ids(std::vector<uint64_t>{5, 1}, &r2);
  CHECK(st.code() == StatusCode::kInvalidArgument);
  CHECK(st.message().find("id 1 is taken by another add in progress") != std::string::npos);
  CHECK_FALSE(r2.active());
  CHECK(bank->reserve_ids(std::vector<uint64_t>{5, 5}, &r2).code() == StatusCode::kInvalidArgument);
  CHECK(bank->reserve_ids(std::vector<uint64_t>{UINT64_MAX}, &r2).code() == StatusCode::kInvalidArgument);
  CHECK(bank->reserve_ids(std::vector<uint64_t>{}, &r2).code() == StatusCode::kInvalidArgument);
  CHECK(bank->reserve_ids(0, &r2).code() == StatusCode::kInvalidArgument);
  CHECK(bank->n_reserved_ids() == 2);
  REQUIRE(bank->reserve_ids(std::vector<uint64_t>{9, 5}, &r2).ok());
  CHECK(r2.ids() == std::vector<uint64_t>{9, 5});
  // Automatic ids continue above every reserved one.
  REQUIRE(bank->reserve_ids(1, &r3).ok());
  CHECK(r3.ids() == std::vector<uint64_t>{10});
  CHECK(bank->n_reserved_ids() == 5);

  // add(): reserved ids are refused without their reservation, and a reservation covers exactly its ids.
  Batch b;
  b.add(0, 2, 1.0f);
  b.add(1, 3, 2.0f);
  st = bank->add(b.docs, b.pooled);
  CHECK(st.code() == StatusCode::kInvalidArgument);
  CHECK(st.message().find("taken by another add in progress") != std::string::npos);
  Batch wrong;
  wrong.add(0, 2, 1.0f);
  wrong.add(7, 3, 2.0f);
  st = bank->add(wrong.docs, wrong.pooled, &r1);
  CHECK(st.code() == StatusCode::kInvalidArgument);
  CHECK(st.message().find("not one of the reserved ids") != std::string::npos);
  CHECK(bank->add(b.docs, b.pooled, &r2).code() == StatusCode::kInvalidArgument);  // r2 holds 9 and 5
  CHECK(r1.active());
  CHECK(bank->n_documents() == 0);
  REQUIRE(bank->add(b.docs, b.pooled, &r1).ok());
  CHECK_FALSE(r1.active());
  CHECK(r1.ids() == std::vector<uint64_t>{0, 1});
  CHECK(bank->n_documents() == 2);
  CHECK(bank->n_reserved_ids() == 3);
  // A consumed reservation cannot be used again.
  CHECK(bank->add(b.docs, b.pooled, &r1).code() == StatusCode::kInvalidArgument);

  // Releasing gives the ids back: automatic ids continue from the bank's largest id again.
  r3.release();
  CHECK_FALSE(r3.active());
  CHECK(bank->next_id() == 10);  // r2 still holds 9
  r2 = msa::IdReservation();     // move-assignment releases too
  CHECK(bank->next_id() == 2);
  CHECK(bank->n_reserved_ids() == 0);
  {
    msa::IdReservation scoped;
    REQUIRE(bank->reserve_ids(std::vector<uint64_t>{2, 3}, &scoped).ok());
    msa::IdReservation moved(std::move(scoped));
    CHECK_FALSE(scoped.active());
    CHECK(moved.active());
    CHECK(bank->n_reserved_ids() == 2);
  }
  CHECK(bank->n_reserved_ids() == 0);  // released by the destructor
  Batch c;
  c.add(2, 1, 3.0f);
  CHECK(bank->add(c.docs, c.pooled).ok());

  // Concurrent reservations of automatic ids are disjoint.
  auto fresh = make_bank();
  std::vector<std::vector<uint64_t>> got(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        msa::IdReservation r;
        if (!fresh->reserve_ids(3, &r).ok()) return;
        const std::vector<uint64_t> ids = r.ids();
        got[static_cast<size_t>(t)].insert(got[static_cast<size_t>(t)].end(), ids.begin(), ids.end());
        Batch one;
        for (uint64_t id : ids) one.add(id, 5, static_cast<float>(t));
        if (!fresh->add(one.docs, one.pooled, &r).ok()) return;
      }
    });
  }
  for (auto& th : threads) th.join();
  std::set<uint64_t> all;
  for (const auto& g : got) all.insert(g.begin(), g.end());
  CHECK(all.size() == 300);
  CHECK(fresh->n_documents() == 300);
  CHECK(fresh->next_id() == 300);
  for (uint64_t id = 0; id < 300; ++id) CHECK(fresh->find(id) >= 0);
}

TEST_CASE("MemoryBank: a bank never grows past limits::kMaxBankDocuments (live + removed + reserved)", "[memory]") {
  auto bank = make_bank();
  Batch b;
  b.add(0, 2, 1.0f);
  b.add(1, 3, 2.0f);
  REQUIRE(bank->add(b.docs, b.pooled).ok());
  REQUIRE(bank->remove({0}).ok());  // removed documents still count until compact()
  msa::IdReservation big;
  msa::Status st = bank->reserve_ids(static_cast<size_t>(msa::limits::kMaxBankDocuments) - 1, &big);
  CHECK(st.code() == StatusCode::kInvalidArgument);
  CHECK(st.message().find("MSA_MAX_BANK_DOCUMENTS") != std::string::npos);
  // Reservations count: with all but three places reserved, an add of four is refused, one of three fits.
  REQUIRE(bank->reserve_ids(static_cast<size_t>(msa::limits::kMaxBankDocuments) - 5, &big).ok());
  Batch four, three;
  const uint64_t past = uint64_t{1} << 40;  // above the automatic ids `big` holds
  for (uint64_t i = 0; i < 4; ++i) four.add(past + i, 1, 1.0f);
  for (uint64_t i = 0; i < 3; ++i) three.add(past + i, 1, 1.0f);
  st = bank->add(four.docs, four.pooled);
  CHECK(st.code() == StatusCode::kInvalidArgument);
  CHECK(st.message().find("more than the limit") != std::string::npos);
  CHECK(bank->n_documents() == 2);
  msa::IdReservation one;
  CHECK(bank->reserve_ids(4, &one).code() == StatusCode::kInvalidArgument);
  REQUIRE(bank->add(three.docs, three.pooled).ok());
  CHECK(bank->n_documents() == 5);
  big.release();
  CHECK(bank->reserve_ids(4, &one).ok());
}

TEST_CASE("MemoryBank: bf16/int8 pages are held in their dtype; read_pages and the routing scan's decode give the codec's "
          "values; remove + compact in RAM keep the other documents bit for bit",
          "[memory][bank]") {
  const ModelConfig c = small_config();
  for (msa::PageDType t : {msa::PageDType::kBF16, msa::PageDType::kInt8}) {
    INFO(msa::page_dtype_name(t));
    std::vector<std::vector<float>> tk(3, std::vector<float>(3 * kWidth, 0.5f)), tv = tk;
    std::unique_ptr<MemoryBank> bank;
    REQUIRE(MemoryBank::create(c, tk, tv, &bank, t).ok());
    Batch b;
    b.add(10, 5, 1.0f);   // 2 chunks
    b.add(11, 9, 2.0f);   // 3 chunks
    b.add(12, 4, 3.0f);   // 1 chunk
    const Batch orig = b;
    REQUIRE(bank->add(b.docs, b.pooled).ok());
    CHECK(bank->routing(0).keys.empty());
    CHECK(bank->routing(0).packed.size() == 6 * msa::page_row_bytes(t, kWidth));
    CHECK(bank->routing(0).scales.size() == static_cast<size_t>(6 * msa::page_row_scales(t, 2)));
    const msa::MemoryStats st = bank->stats();
    CHECK(st.dtype == t);
    CHECK(st.routing_bytes == kRouterLayers * 6 *
                                  static_cast<int64_t>(msa::page_row_bytes(t, kWidth) +
                                                       msa::page_row_scales(t, 2) * 4 + 4));
    auto expect_rows = [&](const std::vector<float>& x, int64_t n, std::vector<float>* out) {
      std::vector<uint8_t> q(static_cast<size_t>(n) * msa::page_row_bytes(t, kWidth));
      std::vector<float> s(static_cast<size_t>(n * msa::page_row_scales(t, 2)));
      msa::encode_rows(t, x.data(), n, 2, 3, q.data(), s.data());
      out->resize(x.size());
      msa::decode_rows(t, q.data(), s.data(), n, 2, 3, out->data());
    };
    auto check_doc = [&](const MemoryBank& bk, int64_t index, size_t orig_i) {
      const int64_t n = orig.pooled[orig_i].n_chunks;
      for (int l = 0; l < kRouterLayers; ++l) {
        std::vector<float> k(static_cast<size_t>(n * kWidth)), v(k.size()), rows(k.size()), want;
        REQUIRE(bk.read_pages(l, index, k.data(), v.data()).ok());
        expect_rows(orig.pooled[orig_i].k[static_cast<size_t>(l)], n, &want);
        CHECK(k == want);
        expect_rows(orig.pooled[orig_i].v[static_cast<size_t>(l)], n, &want);
        CHECK(v == want);
        decode_routing_rows(bk, l, bk.document(index).chunk_begin, n, rows.data());
        expect_rows(orig.pooled[orig_i].rk[static_cast<size_t>(l)], n, &want);
        CHECK(rows == want);
      }
    };
    for (int64_t i = 0; i < 3; ++i) check_doc(*bank, i, static_cast<size_t>(i));
    REQUIRE(bank->remove({11}).ok());
    CHECK(bank->n_live_documents() == 2);
    CHECK(bank->find(11) < 0);
    CHECK(bank->stats().n_documents == 2);
    CHECK(bank->stats().n_removed == 1);
    REQUIRE(bank->compact().ok());
    CHECK(bank->n_documents() == 2);
    CHECK(bank->routing(0).n_chunks() == 3);
    CHECK(bank->routing(1).chunk_doc == std::vector<int32_t>({0, 0, 1}));
    CHECK(bank->document(1).chunk_begin == 2);
    check_doc(*bank, 0, 0);
    check_doc(*bank, 1, 2);
    CHECK(bank->next_id() == 13);
  }
}

TEST_CASE("memory bank: version() strictly increases on every observable change and only then", "[memory][bank]") {
  auto bank = make_bank();
  auto other = make_bank();
  CHECK(other->version() != bank->version());  // one process-wide counter: banks never share a value
  uint64_t last = bank->version();
  auto changed = [&](const char* what) {
    INFO(what);
    CHECK(bank->version() > last);
    last = bank->version();
  };
  auto unchanged = [&](const char* what) {
    INFO(what);
    CHECK(bank->version() == last);
  };
  Batch b;
  b.add(1, 5, 1.0f);
  b.add(2, 3, 2.0f);
  b.add(3, 9, 3.0f);
  REQUIRE(bank->add(b.docs, b.pooled).ok());
  changed("add");
  REQUIRE(bank->add({}, {}).ok());
  unchanged("empty add");
  Batch dup;
  dup.add(2, 4, 1.0f);
  CHECK(bank->add(dup.docs, dup.pooled).code() == StatusCode::kInvalidArgument);
  unchanged("failed add");
  msa::IdReservation r;
  REQUIRE(bank->reserve_ids(2, &r).ok());
  unchanged("reserve_ids");
  r.release();
  unchanged("release");
  REQUIRE(bank->compact().ok());
  unchanged("compact with nothing removed");
  CHECK(bank->remove({7}).code() == StatusCode::kInvalidArgument);
  unchanged("failed remove");
  REQUIRE(bank->remove({2}).ok());
  changed("remove");
  REQUIRE(bank->compact().ok());
  changed("compact in RAM");
  bank->set_fingerprint(bank->fingerprint());
  changed("set_fingerprint");

  // Attached: save (re-served from the new segment), add / remove (committed), compact (rewritten), open.
  TempDir dir("version");
  REQUIRE(bank->save(dir.str()).ok());
  changed("save");
  Batch more;
  more.add(9, 4, 4.0f);
  REQUIRE(bank->add(more.docs, more.pooled).ok());
  changed("add on an attached bank");
  REQUIRE(bank->remove({1}).ok());
  changed("remove on an attached bank");
  REQUIRE(bank->compact().ok());
  changed("compact on an attached bank");
  std::unique_ptr<MemoryBank> opened;
  REQUIRE(MemoryBank::open(dir.str(), small_config(), nullptr, msa::BankOpenOptions(), &opened).ok());
  CHECK(opened->version() > last);  // a bank opened later never shows an earlier bank's value
  CHECK(opened->version() != other->version());
}

namespace {

// Stages `idx` in every router slot of `bank` and checks the layout, that nothing past layout.bytes is written,
// and that decoding each plane gives read_pages' K and V bit for bit. codecs (may be null): counts the codec of
// every segment frame staged (0 raw, 1 zstd, 3 shuffled zstd) to show which decompression paths ran.
void check_staging(const MemoryBank& bank, const std::vector<int64_t>& idx, std::set<uint32_t>* codecs = nullptr) {
  const msa::PageDType t = bank.dtype();
  const int64_t heads = 2, hd = 3;
  msa::StagedPagesLayout l;
  REQUIRE(bank.staged_layout(idx.data(), idx.size(), &l).ok());
  int64_t rows = 0;
  for (int64_t i : idx) rows += bank.document(i).n_chunks;
  const size_t rb = msa::page_row_bytes(t, kWidth);
  const size_t sb = static_cast<size_t>(msa::page_row_scales(t, heads)) * sizeof(float);
  CHECK(l.dtype == t);
  CHECK(l.n_rows == rows);
  CHECK(l.k_rows == 0);
  for (size_t off : {l.k_scales, l.v_rows, l.v_scales, l.bytes}) CHECK(off % 64 == 0);
  CHECK(l.k_scales >= static_cast<size_t>(rows) * rb);
  CHECK(l.v_rows >= l.k_scales + static_cast<size_t>(rows) * sb);
  CHECK(l.v_scales >= l.v_rows + static_cast<size_t>(rows) * rb);
  CHECK(l.bytes >= l.v_scales + static_cast<size_t>(rows) * sb);
  CHECK(l.bytes < l.v_scales + static_cast<size_t>(rows) * sb + 64);
  for (int slot = 0; slot < bank.n_router_layers(); ++slot) {
    INFO("router slot " << slot);
    std::vector<uint8_t> buf(l.bytes + 64, 0xAB);  // 64 guard bytes past the layout
    msa::StagedPagesLayout got;
    const msa::Status st = bank.stage_pages(slot, idx.data(), idx.size(), buf.data(), l.bytes, &got);
    INFO(st.to_string());
    REQUIRE(st.ok());
    CHECK(got.bytes == l.bytes);
    CHECK(got.v_scales == l.v_scales);
    for (size_t g = l.bytes; g < buf.size(); ++g) REQUIRE(buf[g] == 0xAB);
    // Staged in parallel (documents spread over 3 threads): the same bytes.
    static msa::ThreadPool pool(3);
    std::vector<uint8_t> par(l.bytes + 64, 0xCD);
    REQUIRE(bank.stage_pages(slot, idx.data(), idx.size(), par.data(), l.bytes, nullptr, &pool).ok());
    CHECK(std::memcmp(par.data(), buf.data(), l.bytes) == 0);
    for (size_t g = l.bytes; g < par.size(); ++g) REQUIRE(par[g] == 0xCD);
    int64_t row = 0;
    for (size_t e = 0; e < idx.size(); ++e) {
      INFO("entry " << e << ", document index " << idx[e]);
      const int64_t n = bank.document(idx[e]).n_chunks;
      std::vector<float> k(static_cast<size_t>(n * kWidth)), v(k.size()), sk(k.size()), sv(k.size());
      REQUIRE(bank.read_pages(slot, idx[e], k.data(), v.data()).ok());
      const size_t r = static_cast<size_t>(row);
      const bool i8 = t == msa::PageDType::kInt8;
      msa::decode_rows(t, buf.data() + l.k_rows + r * rb,
                       i8 ? reinterpret_cast<const float*>(buf.data() + l.k_scales + r * sb) : nullptr, n, heads, hd,
                       sk.data());
      msa::decode_rows(t, buf.data() + l.v_rows + r * rb,
                       i8 ? reinterpret_cast<const float*>(buf.data() + l.v_scales + r * sb) : nullptr, n, heads, hd,
                       sv.data());
      CHECK(std::memcmp(sk.data(), k.data(), k.size() * sizeof(float)) == 0);
      CHECK(std::memcmp(sv.data(), v.data(), v.size() * sizeof(float)) == 0);
      row += n;
    }
  }
  if (codecs != nullptr && !bank.path().empty()) {
    msa::BankFiles bf;
    REQUIRE(msa::read_bank_files(bank.path(), false, &bf).ok());
    for (const auto& seg : bf.segments) {
      for (int slot = 0; slot < seg->n_router_layers(); ++slot) {
        for (size_t d = 0; d < seg->docs().size(); ++d) codecs->insert(seg->frame(slot, d).codec);
      }
    }
  }
}

}  // namespace

TEST_CASE("memory bank: stage_pages decodes to read_pages' pages bit for bit (f32, bf16, int8; RAM, saved, reopened, "
          "mixed); a corrupt frame names file, slot and document",
          "[memory][bank]") {
  const ModelConfig c = small_config();
  std::set<uint32_t> codecs;
  for (msa::PageDType t : {msa::PageDType::kF32, msa::PageDType::kBF16, msa::PageDType::kInt8}) {
    INFO(msa::page_dtype_name(t));
    std::unique_ptr<MemoryBank> bank = make_bank(t);
    Batch b;
    b.add(10, 5, 1.0f);    // 2 chunks
    b.add(11, 9, 2.0f);    // 3 chunks
    b.add(12, 4, 3.0f);    // 1 chunk
    b.add(13, 13, -4.0f);  // 4 chunks
    REQUIRE(bank->add(b.docs, b.pooled).ok());
    const std::vector<int64_t> order = {3, 0, 2, 1, 0};  // any order, repeats allowed
    check_staging(*bank, order);
    REQUIRE(bank->remove({11}).ok());
    check_staging(*bank, {1, 2});  // tombstoned documents still stage (their pages stay until compact())

    TempDir dir("stage");
    REQUIRE(bank->save(dir.str()).ok());  // now served from the new segment (the tombstoned one dropped)
    check_staging(*bank, {2, 0, 1, 0}, &codecs);
    std::unique_ptr<MemoryBank> opened;
    REQUIRE(MemoryBank::open(dir.str(), c, nullptr, msa::BankOpenOptions(), &opened).ok());
    check_staging(*opened, {1, 2, 0});
    Batch more;
    more.add(14, 7, 5.0f);  // 2 chunks, in RAM next to the mapped ones
    REQUIRE(opened->add(more.docs, more.pooled).ok());
    check_staging(*opened, {3, 0, 3, 2}, &codecs);

    // Errors.
    std::vector<uint8_t> buf(4096);
    const std::vector<int64_t> two = {0, 1};
    msa::StagedPagesLayout l;
    CHECK(opened->stage_pages(-1, two.data(), 2, buf.data(), buf.size(), &l).code() == StatusCode::kInvalidArgument);
    CHECK(opened->stage_pages(2, two.data(), 2, buf.data(), buf.size(), &l).code() == StatusCode::kInvalidArgument);
    for (int64_t bad : {int64_t{-1}, opened->n_documents()}) {
      const std::vector<int64_t> idx = {0, bad};
      CHECK(opened->staged_layout(idx.data(), 2, &l).code() == StatusCode::kInvalidArgument);
      CHECK(opened->stage_pages(0, idx.data(), 2, buf.data(), buf.size(), &l).code() == StatusCode::kInvalidArgument);
    }
    REQUIRE(opened->staged_layout(two.data(), 2, &l).ok());
    msa::StagedPagesLayout told;
    const msa::Status small = opened->stage_pages(0, two.data(), 2, buf.data(), l.bytes - 1, &told);
    CHECK(small.code() == StatusCode::kInvalidArgument);
    CHECK(told.bytes == l.bytes);  // the layout comes back with the error: the caller learns the size needed
    CHECK(opened->stage_pages(0, two.data(), 2, nullptr, buf.size(), &l).code() == StatusCode::kInvalidArgument);
    CHECK(opened->stage_pages(0, nullptr, 2, buf.data(), buf.size(), &l).code() == StatusCode::kInvalidArgument);
    CHECK(opened->staged_layout(two.data(), 2, nullptr).code() == StatusCode::kInvalidArgument);
    REQUIRE(opened->stage_pages(1, nullptr, 0, buf.data(), buf.size(), &l).ok());
    CHECK(l.n_rows == 0);
    CHECK(l.bytes == 0);

    // A flipped byte inside the frame of (router slot 1, document id 12): staging it is kCorrupt naming the file,
    // the slot and the document; the other slot and the other documents still stage.
    opened.reset();
    bank.reset();
    TempDir bad("stage_corrupt");
    std::filesystem::create_directories(bad.path);
    for (const auto& e : std::filesystem::directory_iterator(dir.path)) {
      std::filesystem::copy_file(e.path(), bad.path / e.path().filename());
    }
    std::string seg_name;
    uint64_t at = 0;
    {
      msa::BankFiles bf;
      REQUIRE(msa::read_bank_files(bad.str(), false, &bf).ok());
      for (const auto& seg : bf.segments) {
        for (size_t d = 0; d < seg->docs().size(); ++d) {
          if (seg->docs()[d].id != 12) continue;
          const msa::bankfmt::FrameRef& fr = seg->frame(1, d);
          at = fr.offset + fr.length / 2;
          seg_name = std::filesystem::path(seg->path()).filename().string();
        }
      }
      REQUIRE(!seg_name.empty());
    }
    {
      std::fstream f(bad.path / seg_name, std::ios::in | std::ios::out | std::ios::binary);
      f.seekg(static_cast<std::streamoff>(at));
      char ch = 0;
      f.get(ch);
      f.seekp(static_cast<std::streamoff>(at));
      f.put(static_cast<char>(ch ^ 0x10));
    }
    std::unique_ptr<MemoryBank> hurt;
    REQUIRE(MemoryBank::open(bad.str(), c, nullptr, msa::BankOpenOptions(), &hurt).ok());  // content checked lazily
    const int64_t i12 = hurt->find(12), i10 = hurt->find(10);
    REQUIRE(i12 >= 0);
    const std::vector<int64_t> with12 = {i10, i12};
    REQUIRE(hurt->staged_layout(with12.data(), 2, &l).ok());
    std::vector<uint8_t> out(l.bytes);
    const msa::Status st = hurt->stage_pages(1, with12.data(), 2, out.data(), out.size(), nullptr);
    INFO(st.to_string());
    CHECK(st.code() == StatusCode::kCorrupt);
    CHECK(st.message().find(seg_name) != std::string::npos);
    CHECK(st.message().find("router slot 1") != std::string::npos);
    CHECK(st.message().find("document 12") != std::string::npos);
    // In parallel: the same error (the first failing document in the given order).
    msa::ThreadPool pool(2);
    const msa::Status pst = hurt->stage_pages(1, with12.data(), 2, out.data(), out.size(), nullptr, &pool);
    CHECK(pst.code() == StatusCode::kCorrupt);
    CHECK(pst.message() == st.message());
    CHECK(hurt->stage_pages(0, with12.data(), 2, out.data(), out.size(), nullptr).ok());
    check_staging(*hurt, {i10});
  }
  // Every way a frame is stored was staged over the three dtypes: 0 raw (zstd would not shrink it), 1 zstd, 3 zstd
  // of the byte-shuffled frame (unshuffled straight into the planes).
  CHECK(codecs == std::set<uint32_t>({0, 1, 3}));
}
