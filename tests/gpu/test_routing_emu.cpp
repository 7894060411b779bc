// The routing-tier CUDA kernels (cuda/routing_kernels.cuh, topk.cuh, page_gather.cuh) and the document-map
// helpers of kernel_compat.cuh (build / extend) compiled as host C++ and
// run under the CPU emulation of CUDA thread blocks of emu/block_emulator.h (cooperative fibers: every thread
// of a block runs to its next barrier; shared memory is poisoned with 0xff bytes before each block, so reading
// a byte the kernel did not write shows up as NaN / garbage in the results), against the CPU
// twins — no GPU needed, so CI runs it on every build with the CUDA toolkit:
//   scan + query prep + chunk->document reduction vs msa::score_documents (f32 / bf16 / int8 keys, GQA groups
//   1..4, head_dim 7..128 — all three global-load paths —, 1 and several row passes, every reduction) within
//   1e-5 x sum|q||k|; the top-k radix keys sorted on the host vs msa::select_top_k (exact); the page decode
//   vs msa::decode_rows (bit for bit). Launch plans come from the same plan_route() as the device path.
#define MSA_KERNEL_EMULATION 1

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "emu/block_emulator.h"

#include "core/dtype.h"
#include "memory/memory_bank.h"
#include "memory/page_codec.h"
#include "page_gather.cuh"
#include "backend/cpu/routing_scan.h"
#include "routing_fixtures.h"
#include "routing_kernels.cuh"
#include "topk.cuh"

namespace {

using msa::ChunkReduce;
using msa::HeadReduce;
using msa::PageDType;
using msa::QueryReduce;
using msa::RouterReductions;
namespace kern = msa::cuda::kern;

int g_failures = 0;
void fail(const std::string& m) {
  ++g_failures;
  if (g_failures <= 40) std::printf("FAIL: %s\n", m.c_str());
}

unsigned blocks_for(int64_t n, int64_t per) { return static_cast<unsigned>(std::max<int64_t>(1, (n + per - 1) / per)); }

// The device pipeline of RoutingScorer::score, run through the emulator.
std::vector<float> emu_score(const msa::RoutingIndex& idx, int64_t n_docs, const std::vector<float>& q, int64_t T,
                             int64_t H, int64_t G, int64_t D, const RouterReductions& red) {
  const int64_t n_chunks = idx.n_chunks();
  const kern::RoutePlan plan = kern::plan_route(T, H, G, D, red.head, red.query, idx.dtype, n_chunks);
  std::vector<float> rows(static_cast<size_t>(plan.n_rows * G * D));
  msa_emu::launch(blocks_for(plan.prep_out, 256), 256, 0, [&] {
    kern::prepare_rows_kernel(q.data(), rows.data(), plan.prep_out, static_cast<int>(H), static_cast<int>(G),
                              static_cast<int>(D), static_cast<int>(plan.t_first), static_cast<int>(T), plan.mode);
  });
  std::vector<float> chunk_scores(static_cast<size_t>(std::max<int64_t>(n_chunks, 1)));
  kern::ScanParams p = plan.p;
  p.keys = idx.dtype == PageDType::kF32 ? reinterpret_cast<const unsigned char*>(idx.keys.data()) : idx.packed.data();
  p.scales = idx.dtype == PageDType::kInt8 ? idx.scales.data() : nullptr;
  p.rows = rows.data();
  p.chunk_scores = chunk_scores.data();
  if (n_chunks > 0) {
    msa_emu::launch(blocks_for(n_chunks, plan.bc), kern::kThreads, static_cast<size_t>(plan.smem), [&] {
      if (idx.dtype == PageDType::kInt8) {
        plan.rpt == 1 ? kern::scan_kernel<int8_t, 1>(p) : kern::scan_kernel<int8_t, 8>(p);
      } else if (idx.dtype == PageDType::kBF16) {
        plan.rpt == 1 ? kern::scan_kernel<uint16_t, 1>(p) : kern::scan_kernel<uint16_t, 8>(p);
      } else {
        plan.rpt == 1 ? kern::scan_kernel<float, 1>(p) : kern::scan_kernel<float, 8>(p);
      }
    });
  }
  std::vector<int32_t> offsets, chunks;
  kern::build_doc_csr(idx.chunk_doc, n_docs, &offsets, &chunks);
  std::vector<float> out(static_cast<size_t>(n_docs));
  msa_emu::launch(blocks_for(n_docs, 256), 256, 0, [&] {
    kern::reduce_documents_kernel(chunk_scores.data(), offsets.data(), chunks.data(), static_cast<int>(n_docs),
                                  red.chunk == ChunkReduce::kMean ? 1 : 0, out.data());
  });
  return out;
}

// TopKSelector::select through the emulator, the CUB radix sort replaced by std::sort of the unique keys.
std::vector<msa::ScoredDocument> emu_topk(const std::vector<float>& scores, const msa::MemoryBank& bank, int64_t k) {
  const int64_t n = bank.n_documents();
  std::vector<uint64_t> ids(static_cast<size_t>(n));
  std::vector<uint8_t> removed(static_cast<size_t>(n));
  int64_t live = 0;
  for (int64_t i = 0; i < n; ++i) {
    ids[static_cast<size_t>(i)] = bank.document(i).id;
    removed[static_cast<size_t>(i)] = bank.is_removed(i) ? 1 : 0;
    live += bank.is_removed(i) ? 0 : 1;
  }
  const std::vector<uint32_t> ranks = kern::doc_id_ranks(ids.data(), n);
  std::vector<unsigned long long> keys(static_cast<size_t>(n));
  std::vector<int> vals(static_cast<size_t>(n));
  const int low_bits = kern::topk_low_bits(n);
  msa_emu::launch(blocks_for(n, 256), 256, 0, [&] {
    kern::make_keys_kernel(scores.data(), ranks.data(), removed.data(), static_cast<int>(n), low_bits, keys.data(),
                           vals.data());
  });
  std::vector<size_t> order(static_cast<size_t>(n));
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  const unsigned long long mask = low_bits + 32 >= 64 ? ~0ull : ((1ull << (32 + low_bits)) - 1);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return (keys[a] & mask) < (keys[b] & mask); });
  std::vector<int> sorted_vals(static_cast<size_t>(n));
  for (size_t i = 0; i < order.size(); ++i) sorted_vals[i] = vals[order[i]];
  const int kk = static_cast<int>(std::min(k, live));
  std::vector<int> picked(static_cast<size_t>(2 * std::max(kk, 1)));
  std::vector<msa::ScoredDocument> out;
  if (kk <= 0) return out;
  msa_emu::launch(blocks_for(kk, 256), 256, 0,
                  [&] { kern::pick_kernel(sorted_vals.data(), scores.data(), kk, picked.data()); });
  for (int i = 0; i < kk; ++i) {
    msa::ScoredDocument d;
    d.index = picked[static_cast<size_t>(i)];
    d.id = ids[static_cast<size_t>(d.index)];
    const int bits = picked[static_cast<size_t>(kk + i)];
    std::memcpy(&d.score, &bits, 4);
    out.push_back(d);
  }
  return out;
}

std::unique_ptr<msa::MemoryBank> make_bank(int64_t H, int64_t G, int64_t D, PageDType dt, int64_t n_docs,
                                           uint32_t seed) {
  const int64_t width = G * D;
  std::unique_ptr<msa::MemoryBank> bank;
  if (!routing_fixtures::create_bank(H, G, D, 4, dt, &bank).ok()) {
    fail("MemoryBank::create");
    return nullptr;
  }
  std::mt19937 rng(seed);
  std::normal_distribution<float> val(0.0f, 1.0f);
  std::vector<msa::DocumentRecord> docs;
  std::vector<msa::PooledDocument> pooled;
  std::vector<uint64_t> ids;
  for (int64_t d = 0; d < n_docs; ++d) ids.push_back(static_cast<uint64_t>((d * 7919) % 10007 + 1));
  routing_fixtures::make_documents(
      ids,
      [&] {
        msa::PooledDocument p;
        const int64_t nc = 1 + static_cast<int64_t>(rng() % 5);
        p.n_chunks = nc;
        p.n_tokens = nc * 4;
        std::vector<float> x(static_cast<size_t>(nc * width));
        for (float& v : x) v = val(rng);
        p.rk = {x};
        for (float& v : x) v = val(rng);
        p.k = {x};
        for (float& v : x) v = val(rng);
        p.v = {x};
        return p;
      },
      &docs, &pooled);
  if (!bank->add(docs, pooled).ok()) {
    fail("MemoryBank::add");
    return nullptr;
  }
  std::vector<uint64_t> rm;
  for (int64_t d = 3; d < n_docs; d += 6) rm.push_back(ids[static_cast<size_t>(d)]);
  if (!bank->remove(rm).ok()) fail("MemoryBank::remove");
  return bank;
}

using routing_fixtures::abs_index;

bool same_top(const std::vector<msa::ScoredDocument>& a, const std::vector<msa::ScoredDocument>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].id != b[i].id || a[i].index != b[i].index) return false;
    if (!(a[i].score == b[i].score) && !(std::isnan(a[i].score) && std::isnan(b[i].score))) return false;
  }
  return true;
}

void test_scan() {
  struct Shape {
    int64_t H, G, D;
  };
  const Shape shapes[] = {{4, 4, 16}, {8, 4, 32}, {16, 4, 16}, {8, 2, 128}, {6, 2, 20}, {3, 1, 7}};
  int cases = 0, topk_cases = 0;
  double worst = 0;
  uint32_t seed = 11;
  for (PageDType dt : {PageDType::kF32, PageDType::kBF16, PageDType::kInt8}) {
    for (const Shape& s : shapes) {
      auto bank = make_bank(s.H, s.G, s.D, dt, 110, seed++);  // ~330 chunks: two scan tiles of 256
      if (!bank) return;
      const msa::RoutingIndex& idx = bank->routing(0);
      const msa::RoutingIndex aidx = abs_index(idx);
      const routing_fixtures::DocArrays docs = routing_fixtures::doc_arrays(*bank);
      const msa::RoutingIndexView view = routing_fixtures::view_of(idx, *bank, docs);
      const int64_t n_docs = bank->n_documents();
      for (int64_t T : {1, 3, 9}) {
        std::mt19937 rng(seed++);
        std::normal_distribution<float> val(0.0f, 0.1f);
        std::vector<float> q(static_cast<size_t>(T * s.H * s.D)), qa(q.size());
        for (size_t i = 0; i < q.size(); ++i) {
          q[i] = val(rng);
          qa[i] = std::fabs(q[i]);
        }
        msa::RouterQuery cq{q.data(), T, s.H, s.G, s.D};
        msa::RouterQuery aq{qa.data(), T, s.H, s.G, s.D};
        std::vector<float> mag;
        if (!msa::score_documents_per_head(aq, routing_fixtures::view_of(aidx, *bank, docs), RouterReductions(), &mag).ok()) {
          fail("magnitude");
          return;
        }
        for (HeadReduce h : {HeadReduce::kMean, HeadReduce::kMax}) {
          for (QueryReduce qr : {QueryReduce::kMax, QueryReduce::kMean, QueryReduce::kLast}) {
            for (ChunkReduce cr : {ChunkReduce::kMax, ChunkReduce::kMean}) {
              RouterReductions red;
              red.head = h;
              red.query = qr;
              red.chunk = cr;
              std::vector<float> cpu;
              if (!msa::score_documents(cq, view, red, &cpu).ok()) {
                fail("score_documents");
                continue;
              }
              const std::vector<float> emu = emu_score(idx, n_docs, q, T, s.H, s.G, s.D, red);
              ++cases;
              char tag[200];
              std::snprintf(tag, sizeof tag, "H=%lld G=%lld D=%lld T=%lld %s head %d query %d chunk %d",
                            static_cast<long long>(s.H), static_cast<long long>(s.G), static_cast<long long>(s.D),
                            static_cast<long long>(T), msa::page_dtype_name(dt), static_cast<int>(h),
                            static_cast<int>(qr), static_cast<int>(cr));
              for (size_t d = 0; d < cpu.size(); ++d) {
                const double tol = 1e-5 * mag[d] + 1e-30;
                const double err = std::fabs(static_cast<double>(emu[d]) - cpu[d]);
                if (!(err <= tol)) {
                  char m[400];
                  std::snprintf(m, sizeof m, "%s: doc %zu emulated %.9g cpu %.9g tol %.3g", tag, d, emu[d], cpu[d], tol);
                  fail(m);
                  break;
                }
                worst = std::max(worst, err / tol);
              }
              // Top-k of the emulated scores == select_top_k of the same scores.
              for (int64_t k : {int64_t{1}, int64_t{16}, n_docs + 3}) {
                std::vector<msa::ScoredDocument> ref;
                if (!msa::select_top_k(emu, view, k, &ref).ok()) {
                  fail("select_top_k");
                  continue;
                }
                ++topk_cases;
                if (!same_top(emu_topk(emu, *bank, k), ref)) fail(std::string(tag) + ": emulated top-k differs");
              }
            }
          }
        }
      }
    }
  }
  std::printf("emulated scan vs score_documents: %d cases, worst |emu-cpu|/tol %.3f; emulated top-k vs "
              "select_top_k: %d cases\n",
              cases, worst, topk_cases);
}

void test_topk_specials() {
  auto bank = make_bank(1, 1, 2, PageDType::kF32, 300, 5);
  if (!bank) return;
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  const float pool[] = {0.5f, 0.25f, -0.0f, 0.0f, nan, -inf, inf, -1e30f, 1e-40f, -1e-40f};
  std::mt19937 rng(3);
  const routing_fixtures::DocArrays docs = routing_fixtures::doc_arrays(*bank);
  const msa::RoutingIndexView view = routing_fixtures::view_of(bank->routing(0), *bank, docs);
  int cases = 0;
  for (int variant = 0; variant < 3; ++variant) {
    std::vector<float> s(static_cast<size_t>(bank->n_documents()));
    for (float& x : s) x = variant == 0 ? pool[rng() % 10] : (variant == 1 ? static_cast<float>(rng() % 4) : nan);
    for (int64_t k : {int64_t{1}, int64_t{7}, int64_t{300}, int64_t{1000}}) {
      std::vector<msa::ScoredDocument> ref;
      if (!msa::select_top_k(s, view, k, &ref).ok()) {
        fail("select_top_k");
        continue;
      }
      ++cases;
      if (!same_top(emu_topk(s, *bank, k), ref)) fail("emulated top-k with specials, variant " + std::to_string(variant));
    }
  }
  std::printf("emulated top-k with ties / NaN / +-0 / +-inf / tombstones: %d cases\n", cases);
}

void test_decode() {
  int cases = 0;
  for (PageDType dt : {PageDType::kF32, PageDType::kBF16, PageDType::kInt8}) {
    for (int64_t D : {7, 32}) {
      const int64_t G = 2, width = G * D;
      auto bank = make_bank(4, G, D, dt, 20, 8);
      if (!bank) return;
      const msa::ContentPages& cp = bank->content(0);
      int64_t n = 0;
      for (int64_t d = 0; d < bank->n_documents(); ++d) n += bank->document(d).n_chunks;
      // Staged layout of PageGatherer::gather for all rows in order: K | V | K scales | V scales.
      auto a16 = [](size_t x) { return (x + 15) / 16 * 16; };
      const size_t rb = msa::page_row_bytes(dt, width);
      const size_t sb = dt == PageDType::kInt8 ? static_cast<size_t>(G) * 4 : 0;
      const size_t rows_b = a16(static_cast<size_t>(n) * rb), sc_b = a16(static_cast<size_t>(n) * sb);
      std::vector<unsigned char> raw(2 * rows_b + 2 * sc_b);
      const unsigned char* k = dt == PageDType::kF32 ? reinterpret_cast<const unsigned char*>(cp.k.data()) : cp.qk.data();
      const unsigned char* v = dt == PageDType::kF32 ? reinterpret_cast<const unsigned char*>(cp.v.data()) : cp.qv.data();
      std::memcpy(raw.data(), k, static_cast<size_t>(n) * rb);
      std::memcpy(raw.data() + rows_b, v, static_cast<size_t>(n) * rb);
      if (sb > 0) {
        std::memcpy(raw.data() + 2 * rows_b, cp.k_scales.data(), static_cast<size_t>(n) * sb);
        std::memcpy(raw.data() + 2 * rows_b + sc_b, cp.v_scales.data(), static_cast<size_t>(n) * sb);
      }
      std::vector<float> rk(static_cast<size_t>(n * width)), rv(rk.size());
      msa::decode_rows(dt, k, sb ? cp.k_scales.data() : nullptr, n, G, D, rk.data());
      msa::decode_rows(dt, v, sb ? cp.v_scales.data() : nullptr, n, G, D, rv.data());
      for (int out_bf16 : {0, 1}) {
        std::vector<uint32_t> ok_buf(static_cast<size_t>(n * width)), ov_buf(ok_buf.size());
        kern::DecodeParams p{};
        p.raw = raw.data();
        p.v_off = rows_b;
        p.ks_off = 2 * rows_b;
        p.vs_off = 2 * rows_b + sc_b;
        p.n_elems = n * width;
        p.width = static_cast<int>(width);
        p.head_dim = static_cast<int>(D);
        p.n_kv = static_cast<int>(G);
        p.dtype = static_cast<int>(dt);
        p.out_bf16 = out_bf16;
        p.k_out = ok_buf.data();
        p.v_out = ov_buf.data();
        msa_emu::launch(3, 64, 0, [&] { kern::decode_pages_kernel(p); });  // grid-stride loop: few blocks
        ++cases;
        bool same = true;
        for (size_t i = 0; i < rk.size() && same; ++i) {
          if (out_bf16) {
            uint16_t gk, gv;
            std::memcpy(&gk, reinterpret_cast<const unsigned char*>(ok_buf.data()) + 2 * i, 2);
            std::memcpy(&gv, reinterpret_cast<const unsigned char*>(ov_buf.data()) + 2 * i, 2);
            same = gk == msa::f32_to_bf16(rk[i]) && gv == msa::f32_to_bf16(rv[i]);
          } else {
            same = std::memcmp(&ok_buf[i], &rk[i], 4) == 0 && std::memcmp(&ov_buf[i], &rv[i], 4) == 0;
          }
        }
        if (!same) fail(std::string("emulated decode ") + msa::page_dtype_name(dt) + " D=" + std::to_string(D));
      }
    }
  }
  std::printf("emulated page decode vs decode_rows (bit for bit): %d cases\n", cases);
}

// The scan's int8 -> f32 conversion (byte permute + bias, no I2F) against static_cast<float>, for every byte value
// in every lane of the packed word, bit for bit.
void test_int8_convert() {
  int bad = 0;
  for (int lane = 0; lane < 4; ++lane) {
    for (int b = 0; b < 256; ++b) {
      // The other lanes hold other values, so a selector that picks the wrong byte shows.
      uint8_t bytes[4] = {static_cast<uint8_t>(b + 17), static_cast<uint8_t>(b + 101), static_cast<uint8_t>(b + 203),
                          static_cast<uint8_t>(b + 59)};
      bytes[lane] = static_cast<uint8_t>(b);
      uint32_t word = 0;
      std::memcpy(&word, bytes, 4);
      const float4 got = kern::int8x4_to_float4(word);
      const float g[4] = {got.x, got.y, got.z, got.w};
      for (int k = 0; k < 4; ++k) {
        const float want = static_cast<float>(static_cast<int8_t>(bytes[k]));
        if (std::memcmp(&g[k], &want, 4) != 0) ++bad;
      }
    }
  }
  if (bad > 0) fail("int8x4_to_float4 differs from static_cast<float> on " + std::to_string(bad) + " values");
  std::printf("int8 -> f32 conversion of the scan: 1024 words, %s\n", bad == 0 ? "exact" : "FAIL");
}

// DeviceRoutingIndex's append path: the document map extended by its tail (kern::extend_doc_csr) equals the map
// built whole (kern::build_doc_csr), for appended chunks of new documents in any order; a chunk of an earlier
// document is refused (the index then rebuilds).
void test_extend_csr() {
  std::mt19937 rng(4242);
  int cases = 0;
  for (int trial = 0; trial < 200; ++trial) {
    const int64_t old_docs = std::uniform_int_distribution<int64_t>(0, 30)(rng);
    const int64_t new_docs = std::uniform_int_distribution<int64_t>(0, 30)(rng);
    const int64_t n_docs = old_docs + new_docs;
    std::vector<int32_t> chunk_doc;
    const int64_t n_old = old_docs == 0 ? 0 : std::uniform_int_distribution<int64_t>(0, 120)(rng);
    for (int64_t c = 0; c < n_old; ++c) {
      chunk_doc.push_back(static_cast<int32_t>(std::uniform_int_distribution<int64_t>(0, old_docs - 1)(rng)));
    }
    const int64_t n_new = new_docs == 0 ? 0 : std::uniform_int_distribution<int64_t>(0, 120)(rng);
    std::vector<int32_t> fresh;
    for (int64_t c = 0; c < n_new; ++c) {
      fresh.push_back(static_cast<int32_t>(std::uniform_int_distribution<int64_t>(old_docs, n_docs - 1)(rng)));
    }
    std::vector<int32_t> off_old, ch_old, off_all, ch_all, off_tail, ch_tail;
    kern::build_doc_csr(chunk_doc, old_docs, &off_old, &ch_old);
    chunk_doc.insert(chunk_doc.end(), fresh.begin(), fresh.end());
    kern::build_doc_csr(chunk_doc, n_docs, &off_all, &ch_all);
    if (!kern::extend_doc_csr(fresh.data(), n_new, n_old, old_docs, n_docs, &off_tail, &ch_tail)) {
      fail("extend_doc_csr refused an append of new documents (trial " + std::to_string(trial) + ")");
      continue;
    }
    off_old.insert(off_old.end(), off_tail.begin(), off_tail.end());
    ch_old.insert(ch_old.end(), ch_tail.begin(), ch_tail.end());
    if (off_old != off_all || ch_old != ch_all) {
      fail("extended document map differs (trial " + std::to_string(trial) + ")");
    }
    ++cases;
    if (old_docs > 0 && n_new > 0) {
      std::vector<int32_t> bad = fresh;
      bad[bad.size() / 2] = static_cast<int32_t>(old_docs - 1);  // a chunk of an earlier document
      if (kern::extend_doc_csr(bad.data(), n_new, n_old, old_docs, n_docs, &off_tail, &ch_tail)) {
        fail("extend_doc_csr accepted a chunk of an earlier document");
      }
    }
  }
  std::printf("document map extended by its tail vs built whole: %d cases\n", cases);
  // DeviceDocSet's add path: the id ranks extended by the new documents' equal the ranks of all of them when
  // every new id is above the old ones; otherwise extend_id_ranks refuses.
  int rank_cases = 0;
  for (int trial = 0; trial < 200; ++trial) {
    const int64_t old_n = std::uniform_int_distribution<int64_t>(0, 40)(rng);
    const int64_t n_new = std::uniform_int_distribution<int64_t>(0, 40)(rng);
    std::vector<uint64_t> ids;
    for (int64_t i = 0; i < old_n; ++i) ids.push_back(std::uniform_int_distribution<uint64_t>(0, 1000)(rng) * 64 + i);
    const uint64_t old_max = ids.empty() ? 0 : *std::max_element(ids.begin(), ids.end());
    for (int64_t i = 0; i < n_new; ++i) {
      ids.push_back(old_max + 1 + std::uniform_int_distribution<uint64_t>(0, 999)(rng) * 64 + static_cast<uint64_t>(i));
    }
    std::vector<uint32_t> ranks = kern::doc_id_ranks(ids.data(), old_n), tail;
    if (!kern::extend_id_ranks(ids.data() + old_n, n_new, old_n, old_max, &tail)) {
      fail("extend_id_ranks refused fresh ids (trial " + std::to_string(trial) + ")");
      continue;
    }
    ranks.insert(ranks.end(), tail.begin(), tail.end());
    if (ranks != kern::doc_id_ranks(ids.data(), old_n + n_new)) fail("extended id ranks differ");
    ++rank_cases;
    if (old_n > 0 && n_new > 0) {
      std::vector<uint64_t> bad(ids.begin() + old_n, ids.end());
      bad.back() = old_max;  // not above the old ids
      if (kern::extend_id_ranks(bad.data(), n_new, old_n, old_max, &tail)) {
        fail("extend_id_ranks accepted an old-range id");
      }
    }
  }
  std::printf("document id ranks extended vs ranked whole: %d cases\n", rank_cases);
}

}  // namespace

int main() {
  test_int8_convert();
  test_extend_csr();
  test_scan();
  test_topk_specials();
  test_decode();
  if (g_failures > 0) {
    std::printf("test_routing_emu: %d FAILURES\n", g_failures);
    return 1;
  }
  std::printf("test_routing_emu: all passed\n");
  return 0;
}
