// MemoryBank persistence (memory_bank.h, docs/FORMAT.md): open / save / remove / compact / verify, page reads.
//
// Commit protocol (every change of an attached bank): the handle holds its process's writer lock on BANK/LOCK
// (bank_dir.h) and the directory's commit mutex, and checks that MANIFEST is still the one it last read or wrote;
// then a new segment is written under a temporary name, fsync'ed, renamed to a fresh name (new_segment_name) and
// the directory fsync'ed; then MANIFEST is replaced the same way (bankfmt::write_manifest). The MANIFEST rename is
// the one atomic commit point: a crash before it leaves the previous manifest (which never references the new
// files); after it, the new state. A failed write removes its temporary file (and an uncommitted segment), so a
// full disk gets its space back. Files no manifest references and no live handle of the process maps are deleted
// after each commit (remove_unreferenced).
#include <algorithm>
#include <cstring>
#include <limits>
#include <mutex>
#include <new>
#include <unordered_set>

#include "memory/memory_bank.h"

#include "core/thread_pool.h"

namespace msa {

// ------------------------------------------------------------------------------------------ page containers

int64_t RoutingIndex::bytes() const {
  return static_cast<int64_t>(keys.size() * sizeof(float) + packed.size() + scales.size() * sizeof(float) +
                              chunk_doc.size() * sizeof(int32_t));
}

int64_t ContentPages::bytes() const {
  return static_cast<int64_t>((k.size() + v.size() + k_scales.size() + v_scales.size()) * sizeof(float) + qk.size() +
                              qv.size());
}

// ------------------------------------------------------------------------------------------ reading files

Status read_bank_files(const std::string& dir, bool verify_content, BankFiles* out) {
  return bankfmt::read_bank_dir(dir, verify_content, out);
}

Status MemoryBank::open(const std::string& dir, const ModelConfig& config, const bankfmt::Fingerprint* expect,
                        const BankOpenOptions& options, std::unique_ptr<MemoryBank>* out) {
  if (out == nullptr) return Error(StatusCode::kInvalidArgument, "memory open: out is null");
  BankFiles bf;
  MSA_RETURN_IF_ERROR(bankfmt::read_bank_dir(dir, options.verify_content, &bf, /*defer_routing=*/true));
  // This process's entry of the directory (no lock: opening is read-only).
  std::shared_ptr<bankfmt::BankDir> entry;
  MSA_RETURN_IF_ERROR(bankfmt::BankDir::get(dir, &entry));
  const bankfmt::Fingerprint& fp = bf.manifest.fp;
  if (expect != nullptr) MSA_RETURN_IF_ERROR(bankfmt::compare_fingerprint(fp, *expect, dir));
  if (fp.num_hidden_layers != static_cast<uint64_t>(config.num_hidden_layers) ||
      fp.num_key_value_heads != static_cast<uint64_t>(config.num_key_value_heads) ||
      fp.head_dim != static_cast<uint64_t>(config.head_dim) ||
      fp.n_router_layers != config.msa.router_layers.size() ||
      fp.router_layers_xxh64 != router_layers_xxh64(config.msa.router_layers) ||
      fp.pooling_kernel_size != static_cast<uint64_t>(config.msa.pooling_kernel_size)) {
    return Error(StatusCode::kInvalidArgument, dir, ": the bank was built for another model shape (layers ",
                 fp.num_hidden_layers, ", kv heads ", fp.num_key_value_heads, ", head_dim ", fp.head_dim,
                 ", router layers ", fp.n_router_layers, ", pooling ", fp.pooling_kernel_size, ")");
  }
  const size_t n_layers = static_cast<size_t>(config.num_hidden_layers);
  const int64_t width = config.num_key_value_heads * config.head_dim;
  const size_t t = static_cast<size_t>(3 * width);
  std::vector<std::vector<float>> tk(n_layers), tv(n_layers);
  for (size_t l = 0; l < n_layers; ++l) {
    const float* base = bf.manifest.template_kv.data() + l * 2 * t;
    tk[l].assign(base, base + t);
    tv[l].assign(base + t, base + 2 * t);
  }
  std::unique_ptr<MemoryBank> bank;
  const PageDType dtype = static_cast<PageDType>(fp.page_dtype);
  MSA_RETURN_IF_ERROR(create(config, std::move(tk), std::move(tv), &bank, dtype));
  MemoryBank& b = *bank;
  b.fp_ = fp;
  uint64_t total_chunks = 0, total_docs = 0;
  for (const auto& seg : bf.segments) {
    total_chunks += seg->n_chunks();
    total_docs += seg->docs().size();
  }
  if (total_docs > static_cast<uint64_t>(std::numeric_limits<int32_t>::max())) {
    return Error(StatusCode::kUnsupported, dir, ": more than 2^31 - 1 documents");
  }
  const int L = static_cast<int>(config.msa.router_layers.size());
  const size_t rb = page_row_bytes(dtype, width);
  const int64_t ns = page_row_scales(dtype, config.num_key_value_heads);
  for (int l = 0; l < L; ++l) {
    RoutingIndex& ri = b.routing_[static_cast<size_t>(l)];
    ri.chunk_doc.resize(total_chunks);
    if (dtype == PageDType::kF32) {
      ri.keys.resize(total_chunks * static_cast<size_t>(width));
    } else {
      ri.packed.resize(total_chunks * rb);
      ri.scales.resize(total_chunks * static_cast<size_t>(ns));
    }
  }
  b.docs_.reserve(total_docs);
  b.src_.reserve(total_docs);
  const std::unordered_set<uint64_t> tomb(bf.manifest.tombstones.begin(), bf.manifest.tombstones.end());
  uint64_t chunk = 0;
  for (size_t si = 0; si < bf.segments.size(); ++si) {
    const bankfmt::SegmentFile& seg = *bf.segments[si];
    const uint64_t nc = seg.n_chunks();
    for (int l = 0; l < L; ++l) {
      RoutingIndex& ri = b.routing_[static_cast<size_t>(l)];
      // The stored rows go straight into the contiguous index (pread, no decoding), checksummed there.
      uint8_t* rows = dtype == PageDType::kF32
                          ? reinterpret_cast<uint8_t*>(ri.keys.data() + chunk * static_cast<uint64_t>(width))
                          : ri.packed.data() + chunk * rb;
      float* scales = ns > 0 ? ri.scales.data() + chunk * static_cast<uint64_t>(ns) : nullptr;
      MSA_RETURN_IF_ERROR(seg.read_routing(l, rows, scales));
    }
    for (size_t j = 0; j < seg.docs().size(); ++j) {
      const bankfmt::SegmentDoc& sd = seg.docs()[j];
      const int32_t index = static_cast<int32_t>(b.docs_.size());
      DocumentRecord rec;
      rec.id = sd.id;
      rec.text = std::string(sd.text);
      rec.n_tokens = static_cast<int64_t>(sd.n_tokens);
      rec.chunk_begin = static_cast<int64_t>(chunk + sd.chunk_begin);
      rec.n_chunks = static_cast<int64_t>(sd.n_chunks);
      rec.removed = tomb.count(sd.id) != 0;
      for (int l = 0; l < L; ++l) {
        RoutingIndex& ri = b.routing_[static_cast<size_t>(l)];
        std::fill_n(ri.chunk_doc.begin() + rec.chunk_begin, rec.n_chunks, index);
      }
      if (rec.removed) {
        b.removed_ids_.insert(rec.id);
        ++b.n_removed_;
      } else {
        b.by_id_.emplace(rec.id, index);
      }
      if (rec.id >= b.next_id_) b.next_id_ = rec.id + 1;
      DocSource ds;
      ds.segment = static_cast<int32_t>(si);
      ds.seg_doc = static_cast<uint32_t>(j);
      b.src_.push_back(ds);
      b.docs_.push_back(std::move(rec));
    }
    chunk += nc;
  }
  b.path_ = dir;
  b.generation_ = bf.manifest.generation;
  b.seg_refs_ = bf.manifest.segments;
  b.segments_ = std::move(bf.segments);
  b.dir_ = std::move(entry);
  b.dir_->track(b.segments_);
  *out = std::move(bank);
  return Status::Ok();
}

void MemoryBank::set_fingerprint(const bankfmt::Fingerprint& fp) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  fp_ = fp;
  fp_.page_dtype = static_cast<uint64_t>(dtype_);
  fp_.template_len = 3;
  bump_version_locked();
}

std::string MemoryBank::path() const { return path_; }

namespace {

// Staged planes start at multiples of this (StagedPagesLayout).
constexpr size_t kStageAlign = 64;

size_t stage_align(size_t x) { return (x + kStageAlign - 1) / kStageAlign * kStageAlign; }

// kInternal unless the segment's record of a document has the bank's chunk count (the frame sizes follow from it).
Status check_segment_doc(const bankfmt::SegmentFile& seg, uint32_t seg_doc, const DocumentRecord& rec) {
  if (seg.docs()[seg_doc].n_chunks != static_cast<uint64_t>(rec.n_chunks)) {
    return Error(StatusCode::kInternal, seg.path(), ": document ", rec.id, " has ", seg.docs()[seg_doc].n_chunks,
                 " chunks in its segment, ", rec.n_chunks, " in the bank");
  }
  return Status::Ok();
}

}  // namespace

Status MemoryBank::read_pages(int slot, int64_t index, float* k, float* v) const {
  const DocumentRecord& rec = docs_[static_cast<size_t>(index)];
  const DocSource& ds = src_[static_cast<size_t>(index)];
  RamParts p;
  std::vector<uint8_t> kr, vr;  // a segment frame's rows
  std::vector<float> ks, vs;    // and scales, float-aligned (in the frame they need not be)
  if (ds.segment < 0) {
    MSA_RETURN_IF_ERROR(ram_parts_locked(slot, index, &p));
  } else {
    const bankfmt::SegmentFile& seg = *segments_[static_cast<size_t>(ds.segment)];
    MSA_RETURN_IF_ERROR(check_segment_doc(seg, ds.seg_doc, rec));
    size_t rows = 0, scales = 0;
    seg.frame_part_bytes(ds.seg_doc, &rows, &scales);
    kr.resize(rows);
    vr.resize(rows);
    ks.resize(scales / sizeof(float));
    vs.resize(ks.size());
    bankfmt::FrameParts to;
    to.k_rows = kr.data();
    to.k_scales = reinterpret_cast<uint8_t*>(ks.data());
    to.v_rows = vr.data();
    to.v_scales = reinterpret_cast<uint8_t*>(vs.data());
    MSA_RETURN_IF_ERROR(seg.read_frame_parts(slot, ds.seg_doc, to, nullptr));
    p.data[0] = to.k_rows;
    p.data[1] = to.k_scales;
    p.data[2] = to.v_rows;
    p.data[3] = to.v_scales;
  }
  const int64_t heads = config_.num_key_value_heads, hd = config_.head_dim;
  decode_rows(dtype_, p.data[0], reinterpret_cast<const float*>(p.data[1]), rec.n_chunks, heads, hd, k);
  decode_rows(dtype_, p.data[2], reinterpret_cast<const float*>(p.data[3]), rec.n_chunks, heads, hd, v);
  return Status::Ok();
}

Status MemoryBank::ram_parts_locked(int slot, int64_t index, RamParts* out) const {
  const DocumentRecord& rec = docs_[static_cast<size_t>(index)];
  const ContentPages& cp = content_[static_cast<size_t>(slot)];
  const size_t rb = page_row_bytes(dtype_, width_);
  const size_t ns = static_cast<size_t>(page_row_scales(dtype_, config_.num_key_value_heads));
  const size_t r0 = static_cast<size_t>(src_[static_cast<size_t>(index)].ram_chunk);
  const size_t n = static_cast<size_t>(rec.n_chunks);
  const bool f32 = dtype_ == PageDType::kF32;
  const size_t held = f32 ? std::min(cp.k.size(), cp.v.size()) / static_cast<size_t>(width_)
                          : std::min(cp.qk.size(), cp.qv.size()) / rb;
  if (r0 + n > held || (ns > 0 && (r0 + n) * ns > std::min(cp.k_scales.size(), cp.v_scales.size()))) {
    return Error(StatusCode::kInternal, "memory bank: document ", rec.id, " has chunks past the content pages");
  }
  RamParts p;
  p.data[0] = f32 ? reinterpret_cast<const uint8_t*>(cp.k.data() + r0 * static_cast<size_t>(width_))
                  : cp.qk.data() + r0 * rb;
  p.data[2] = f32 ? reinterpret_cast<const uint8_t*>(cp.v.data() + r0 * static_cast<size_t>(width_))
                  : cp.qv.data() + r0 * rb;
  p.bytes[0] = p.bytes[2] = n * rb;
  if (ns > 0) {
    p.data[1] = reinterpret_cast<const uint8_t*>(cp.k_scales.data() + r0 * ns);
    p.data[3] = reinterpret_cast<const uint8_t*>(cp.v_scales.data() + r0 * ns);
    p.bytes[1] = p.bytes[3] = n * ns * sizeof(float);
  }
  *out = p;
  return Status::Ok();
}

// The stored frame of one (slot, document): RAM pages re-serialised (K rows, K scales, V rows, V scales), or the
// mapped segment's compressed frame (verified) to copy as is.
Status MemoryBank::raw_frame_locked(int slot, int64_t index, bankfmt::FrameIn* f) const {
  const DocSource& ds = src_[static_cast<size_t>(index)];
  if (ds.segment >= 0) {
    const bankfmt::SegmentFile& seg = *segments_[static_cast<size_t>(ds.segment)];
    MSA_RETURN_IF_ERROR(seg.check_frame(slot, ds.seg_doc));
    const bankfmt::FrameRef& fr = seg.frame(slot, ds.seg_doc);
    f->compressed = seg.bytes() + fr.offset;
    f->compressed_len = fr.length;
    f->codec = fr.codec;
    return Status::Ok();
  }
  RamParts p;
  MSA_RETURN_IF_ERROR(ram_parts_locked(slot, index, &p));
  f->raw.clear();
  for (int i = 0; i < 4; ++i) f->raw.insert(f->raw.end(), p.data[i], p.data[i] + p.bytes[i]);
  return Status::Ok();
}

// ------------------------------------------------------------------------------------------ staging

Status MemoryBank::staged_layout(const int64_t* indices, size_t n, StagedPagesLayout* out) const {
  if (out == nullptr) return Error(StatusCode::kInvalidArgument, "memory stage: layout is null");
  if (indices == nullptr && n > 0) {
    return Error(StatusCode::kInvalidArgument, "memory stage: indices is null for ", n, " documents");
  }
  const size_t rb = page_row_bytes(dtype_, width_);
  const size_t sb = static_cast<size_t>(page_row_scales(dtype_, config_.num_key_value_heads)) * sizeof(float);
  // Two planes of rows and two of scales, plus padding, must fit in size_t (repeated indices could ask for more).
  const size_t max_rows = (std::numeric_limits<size_t>::max() / 4 - 4 * kStageAlign) / (rb + sb);
  size_t nr = 0;
  for (size_t i = 0; i < n; ++i) {
    const int64_t x = indices[i];
    if (x < 0 || x >= n_documents()) {
      return Error(StatusCode::kInvalidArgument, "memory stage: document index ", x, " (entry ", i, ") outside [0, ",
                   n_documents(), ")");
    }
    nr += static_cast<size_t>(docs_[static_cast<size_t>(x)].n_chunks);  // each <= the bank's chunks: no wrap
    if (nr > max_rows) {
      return Error(StatusCode::kInvalidArgument, "memory stage: more than ", max_rows, " rows of ", rb + sb,
                   " bytes (", i + 1, " documents) exceed the address space");
    }
  }
  StagedPagesLayout l;
  l.dtype = dtype_;
  l.n_rows = static_cast<int64_t>(nr);
  l.k_rows = 0;
  l.k_scales = stage_align(l.k_rows + nr * rb);
  l.v_rows = stage_align(l.k_scales + nr * sb);
  l.v_scales = stage_align(l.v_rows + nr * rb);
  l.bytes = stage_align(l.v_scales + nr * sb);
  *out = l;
  return Status::Ok();
}

Status MemoryBank::stage_pages(int slot, const int64_t* indices, size_t n, uint8_t* dst, size_t cap,
                               StagedPagesLayout* layout, ThreadPool* pool) const {
  if (slot < 0 || slot >= n_router_layers()) {
    return Error(StatusCode::kInvalidArgument, "memory stage: router slot ", slot, " outside [0, ", n_router_layers(),
                 ")");
  }
  StagedPagesLayout l;
  MSA_RETURN_IF_ERROR(staged_layout(indices, n, &l));
  if (layout != nullptr) *layout = l;
  if (dst == nullptr) return Error(StatusCode::kInvalidArgument, "memory stage: dst is null");
  if (cap < l.bytes) {
    return Error(StatusCode::kInvalidArgument, "memory stage: ", cap, " bytes of staging for ", l.bytes, " (", n,
                 " documents, ", l.n_rows, " rows)");
  }
  const size_t rb = page_row_bytes(dtype_, width_);
  const size_t sb = static_cast<size_t>(page_row_scales(dtype_, config_.num_key_value_heads)) * sizeof(float);
  const size_t nr = static_cast<size_t>(l.n_rows);
  // Zero padding: the same documents always stage to the same bytes.
  const size_t plane_end[4] = {l.k_rows + nr * rb, l.k_scales + nr * sb, l.v_rows + nr * rb, l.v_scales + nr * sb};
  const size_t next_plane[4] = {l.k_scales, l.v_rows, l.v_scales, l.bytes};
  for (int i = 0; i < 4; ++i) std::memset(dst + plane_end[i], 0, next_plane[i] - plane_end[i]);
  auto oom = [] {
    return Error(StatusCode::kOutOfMemory, "memory stage: out of memory decompressing a content frame");
  };
  // One zstd context per thread, kept across calls (creating one costs more than decompressing a small frame);
  // its buffer is given back past 4 MiB.
  auto stage_one = [&](size_t i, size_t row) -> Status {
    static thread_local bankfmt::FrameScratch scratch;
    Status st;
    try {
      st = stage_document_locked(slot, indices[i], l, row, dst, &scratch);
    } catch (const std::bad_alloc&) {
      st = oom();
    }
    scratch.trim(size_t{4} << 20);
    return st;
  };
  // Documents are independent (disjoint rows in every plane): each starts at its own first row.
  std::vector<size_t> first_row;
  std::vector<Status> st;
  try {
    first_row.resize(n);
    st.resize(n);
  } catch (const std::bad_alloc&) {
    return oom();
  }
  size_t row = 0;
  for (size_t i = 0; i < n; ++i) {
    first_row[i] = row;
    row += static_cast<size_t>(docs_[static_cast<size_t>(indices[i])].n_chunks);
  }
  if (pool == nullptr || pool->size() < 2 || n < 2) {
    for (size_t i = 0; i < n; ++i) MSA_RETURN_IF_ERROR(stage_one(i, first_row[i]));
    return Status::Ok();
  }
  pool->parallel_for(static_cast<int64_t>(n), 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      st[static_cast<size_t>(i)] = stage_one(static_cast<size_t>(i), first_row[static_cast<size_t>(i)]);
    }
  });
  for (Status& s : st) MSA_RETURN_IF_ERROR(std::move(s));
  return Status::Ok();
}

Status MemoryBank::stage_document_locked(int slot, int64_t index, const StagedPagesLayout& l, size_t row,
                                         uint8_t* dst, bankfmt::FrameScratch* scratch) const {
  const size_t rb = page_row_bytes(dtype_, width_);
  const size_t sb = static_cast<size_t>(page_row_scales(dtype_, config_.num_key_value_heads)) * sizeof(float);
  const DocumentRecord& rec = docs_[static_cast<size_t>(index)];
  const DocSource& ds = src_[static_cast<size_t>(index)];
  bankfmt::FrameParts to;
  to.k_rows = dst + l.k_rows + row * rb;
  to.k_scales = dst + l.k_scales + row * sb;
  to.v_rows = dst + l.v_rows + row * rb;
  to.v_scales = dst + l.v_scales + row * sb;
  if (ds.segment >= 0) {
    const bankfmt::SegmentFile& seg = *segments_[static_cast<size_t>(ds.segment)];
    MSA_RETURN_IF_ERROR(check_segment_doc(seg, ds.seg_doc, rec));
    return seg.read_frame_parts(slot, ds.seg_doc, to, scratch);
  }
  RamParts p;
  MSA_RETURN_IF_ERROR(ram_parts_locked(slot, index, &p));
  uint8_t* const into[4] = {to.k_rows, to.k_scales, to.v_rows, to.v_scales};
  for (int j = 0; j < 4; ++j) {
    if (p.bytes[j] > 0) std::memcpy(into[j], p.data[j], p.bytes[j]);
  }
  return Status::Ok();
}

bankfmt::Manifest MemoryBank::manifest_for(std::vector<bankfmt::SegmentRef> segments, std::vector<uint64_t> tombstones,
                                           uint64_t generation) const {
  bankfmt::Manifest m;
  m.generation = generation;
  m.fp = fp_;
  m.fp.page_dtype = static_cast<uint64_t>(dtype_);
  m.fp.template_len = 3;
  for (size_t l = 0; l < template_k_.size(); ++l) {
    m.template_kv.insert(m.template_kv.end(), template_k_[l].begin(), template_k_[l].end());
    m.template_kv.insert(m.template_kv.end(), template_v_[l].begin(), template_v_[l].end());
  }
  m.segments = std::move(segments);
  m.tombstones = std::move(tombstones);
  return m;
}

Status MemoryBank::begin_write_locked(const char* what) {
  if (path_.empty()) return Status::Ok();
  if (!dir_) return Error(StatusCode::kInternal, what, ": ", path_, ": attached without a directory entry");
  const Status st = bankfmt::WriterLock::acquire(dir_, &writer_);
  if (!st.ok()) return Error(st.code(), what, ": ", st.message());
  return Status::Ok();
}

Status MemoryBank::check_unchanged_locked(const char* what) const {
  bankfmt::Manifest m;
  const Status st = bankfmt::read_manifest(path_, &m);
  if (!st.ok()) return Error(st.code(), what, ": ", st.message());
  bool same = m.generation == generation_ && m.segments.size() == seg_refs_.size();
  for (size_t i = 0; same && i < seg_refs_.size(); ++i) {
    same = m.segments[i].name == seg_refs_[i].name && m.segments[i].header_xxh64 == seg_refs_[i].header_xxh64;
  }
  if (!same) {
    return Error(StatusCode::kBusy, what, ": ", path_, " changed on disk since this handle read it (generation ",
                 m.generation, " there, ", generation_,
                 " here): another handle or process committed to the bank; reopen it to write");
  }
  return Status::Ok();
}

Status MemoryBank::commit_manifest_locked(std::vector<bankfmt::SegmentRef> segments,
                                          std::vector<uint64_t> tombstones) {
  const bankfmt::Manifest m = manifest_for(std::move(segments), std::move(tombstones), generation_ + 1);
  MSA_RETURN_IF_ERROR(bankfmt::write_manifest(path_, m));
  generation_ = m.generation;
  seg_refs_ = m.segments;
  bankfmt::remove_unreferenced(path_, m, dir_->in_use());
  return Status::Ok();
}

Status MemoryBank::save(const std::string& dir, bankfmt::WriteStats* stats) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  return save_locked(dir, stats, "memory save");
}

Status MemoryBank::save_locked(const std::string& dir, bankfmt::WriteStats* stats, const char* what) {
  MSA_RETURN_IF_ERROR(bankfmt::make_dirs(dir));
  std::shared_ptr<bankfmt::BankDir> target;
  MSA_RETURN_IF_ERROR(bankfmt::BankDir::get(dir, &target));
  // The writer lock of the target (shared with this handle's current one when it is the same directory).
  bankfmt::WriterLock writer;
  {
    const Status st = bankfmt::WriterLock::acquire(target, &writer);
    if (!st.ok()) return Error(st.code(), what, ": ", st.message());
  }
  std::lock_guard<std::mutex> committing(target->commit_mutex());
  // The next generation: above this bank's and above whatever bank dir holds now. Rewriting the attached
  // directory (compact, or save to it) first checks that nobody committed there since: that would be lost.
  uint64_t gen = generation_;
  if (dir_ != nullptr && dir_ == target) {
    MSA_RETURN_IF_ERROR(check_unchanged_locked(what));
  } else {
    bankfmt::Manifest old;
    if (bankfmt::read_manifest(dir, &old).ok()) gen = std::max(gen, old.generation);
  }
  ++gen;
  const int L = n_router_layers();
  const size_t rb = page_row_bytes(dtype_, width_);
  const int64_t ns = page_row_scales(dtype_, config_.num_key_value_heads);
  std::vector<int64_t> live;
  for (int64_t i = 0; i < n_documents(); ++i) {
    if (!docs_[static_cast<size_t>(i)].removed) live.push_back(i);
  }
  bankfmt::SegmentSource src;
  src.dtype = dtype_;
  src.n_kv_heads = config_.num_key_value_heads;
  src.head_dim = config_.head_dim;
  src.pooling = config_.msa.pooling_kernel_size;
  src.n_router_layers = L;
  for (int64_t i : live) {
    const DocumentRecord& d = docs_[static_cast<size_t>(i)];
    bankfmt::SegmentDocIn in;
    in.id = d.id;
    in.n_tokens = static_cast<uint64_t>(d.n_tokens);
    in.n_chunks = static_cast<uint64_t>(d.n_chunks);
    in.text = d.text;
    src.docs.push_back(in);
  }
  src.routing = [&](int l, std::vector<uint8_t>* rows, std::vector<float>* scales) {
    const RoutingIndex& ri = routing_[static_cast<size_t>(l)];
    for (int64_t i : live) {
      const DocumentRecord& d = docs_[static_cast<size_t>(i)];
      const size_t c0 = static_cast<size_t>(d.chunk_begin), n = static_cast<size_t>(d.n_chunks);
      const uint8_t* base = dtype_ == PageDType::kF32 ? reinterpret_cast<const uint8_t*>(ri.keys.data()) : ri.packed.data();
      rows->insert(rows->end(), base + c0 * rb, base + (c0 + n) * rb);
      if (ns > 0) {
        scales->insert(scales->end(), ri.scales.begin() + static_cast<std::ptrdiff_t>(c0 * static_cast<size_t>(ns)),
                       ri.scales.begin() + static_cast<std::ptrdiff_t>((c0 + n) * static_cast<size_t>(ns)));
      }
    }
    return Status::Ok();
  };
  src.content = [&](int l, size_t j, bankfmt::FrameIn* f) { return raw_frame_locked(l, live[j], f); };
  const std::string name = bankfmt::new_segment_name(gen);
  const std::string seg_path = dir + "/" + name;
  bankfmt::SegmentRef ref;
  MSA_RETURN_IF_ERROR(bankfmt::write_segment(seg_path, gen, src, &ref, stats));
  ref.name = name;
  const bankfmt::Manifest m = manifest_for({ref}, {}, gen);
  {
    const Status st = bankfmt::write_manifest(dir, m);
    if (!st.ok()) {
      bankfmt::discard_uncommitted_segment(dir, name);  // give a full disk its space back
      return st;
    }
  }
  // Serve the bank from what was just written: the same routing rows, the same frames.
  std::unique_ptr<MemoryBank> fresh;
  BankOpenOptions opts;
  MSA_RETURN_IF_ERROR(open(dir, config_, nullptr, opts, &fresh));
  take_state(std::move(*fresh));
  bump_version_locked();
  writer_ = std::move(writer);
  // After take_state: this handle's previous segments are no longer mapped by it (others' still count).
  bankfmt::remove_unreferenced(dir, m, target->in_use());
  return Status::Ok();
}

void MemoryBank::take_state(MemoryBank&& o) {
  width_ = o.width_;
  dtype_ = o.dtype_;
  docs_ = std::move(o.docs_);
  src_ = std::move(o.src_);
  by_id_ = std::move(o.by_id_);
  removed_ids_ = std::move(o.removed_ids_);
  n_removed_ = o.n_removed_;
  // next_id_ never goes down (ids of compacted-away documents are not handed out again).
  next_id_ = std::max(next_id_, o.next_id_);
  routing_ = std::move(o.routing_);
  content_ = std::move(o.content_);
  ram_chunks_ = o.ram_chunks_;
  template_k_ = std::move(o.template_k_);
  template_v_ = std::move(o.template_v_);
  fp_ = o.fp_;
  path_ = std::move(o.path_);
  generation_ = o.generation_;
  seg_refs_ = std::move(o.seg_refs_);
  segments_ = std::move(o.segments_);
  dir_ = std::move(o.dir_);
  // writer_ and the id reservations stay this handle's.
}

Status MemoryBank::remove(const std::vector<uint64_t>& ids) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  std::unordered_set<uint64_t> batch;
  for (uint64_t id : ids) {
    if (by_id_.count(id) == 0) {
      return Error(StatusCode::kInvalidArgument, "memory remove: id ", id,
                   removed_ids_.count(id) ? " was already removed" : " is not in the bank");
    }
    if (!batch.insert(id).second) {
      return Error(StatusCode::kInvalidArgument, "memory remove: id ", id, " appears twice");
    }
  }
  if (ids.empty()) return Status::Ok();
  if (!path_.empty()) {
    MSA_RETURN_IF_ERROR(begin_write_locked("memory remove"));
    std::lock_guard<std::mutex> committing(dir_->commit_mutex());
    MSA_RETURN_IF_ERROR(check_unchanged_locked("memory remove"));
    std::vector<uint64_t> tomb(removed_ids_.begin(), removed_ids_.end());
    tomb.insert(tomb.end(), ids.begin(), ids.end());
    std::sort(tomb.begin(), tomb.end());
    MSA_RETURN_IF_ERROR(commit_manifest_locked(seg_refs_, std::move(tomb)));
  }
  for (uint64_t id : ids) {
    const int64_t index = by_id_.at(id);
    docs_[static_cast<size_t>(index)].removed = true;
    by_id_.erase(id);
    removed_ids_.insert(id);
    ++n_removed_;
  }
  bump_version_locked(Change::kTombstones);
  return Status::Ok();
}

Status MemoryBank::compact() {
  std::unique_lock<std::shared_mutex> lock(mu_);
  if (!path_.empty()) {
    const std::string dir = path_;
    return save_locked(dir, nullptr, "memory compact");
  }
  compact_in_ram_locked();
  return Status::Ok();
}

// Without files every document's pages are in RAM: rebuild the arrays from the live documents' rows.
void MemoryBank::compact_in_ram_locked() {
  if (n_removed_ == 0) return;
  const size_t rb = page_row_bytes(dtype_, width_);
  const size_t ns = static_cast<size_t>(page_row_scales(dtype_, config_.num_key_value_heads));
  const size_t w = static_cast<size_t>(width_);
  std::vector<DocumentRecord> docs;
  std::vector<DocSource> src;
  std::vector<RoutingIndex> routing(routing_.size());
  std::vector<ContentPages> content(content_.size());
  int64_t chunk = 0;
  for (size_t i = 0; i < docs_.size(); ++i) {
    const DocumentRecord& d = docs_[i];
    if (d.removed) continue;
    const size_t c0 = static_cast<size_t>(d.chunk_begin), r0 = static_cast<size_t>(src_[i].ram_chunk);
    const size_t n = static_cast<size_t>(d.n_chunks);
    for (size_t l = 0; l < routing_.size(); ++l) {
      const RoutingIndex& a = routing_[l];
      RoutingIndex& b = routing[l];
      const ContentPages& ca = content_[l];
      ContentPages& cb = content[l];
      b.dtype = a.dtype;
      cb.dtype = ca.dtype;
      b.chunk_doc.insert(b.chunk_doc.end(), n, static_cast<int32_t>(docs.size()));
      if (dtype_ == PageDType::kF32) {
        b.keys.insert(b.keys.end(), a.keys.begin() + static_cast<std::ptrdiff_t>(c0 * w),
                      a.keys.begin() + static_cast<std::ptrdiff_t>((c0 + n) * w));
        cb.k.insert(cb.k.end(), ca.k.begin() + static_cast<std::ptrdiff_t>(r0 * w),
                    ca.k.begin() + static_cast<std::ptrdiff_t>((r0 + n) * w));
        cb.v.insert(cb.v.end(), ca.v.begin() + static_cast<std::ptrdiff_t>(r0 * w),
                    ca.v.begin() + static_cast<std::ptrdiff_t>((r0 + n) * w));
      } else {
        auto cp8 = [](const auto& from, size_t at, size_t len, auto* to) {
          to->insert(to->end(), from.begin() + static_cast<std::ptrdiff_t>(at),
                     from.begin() + static_cast<std::ptrdiff_t>(at + len));
        };
        auto cpf = [](const std::vector<float>& from, size_t at, size_t len, std::vector<float>* to) {
          to->insert(to->end(), from.begin() + static_cast<std::ptrdiff_t>(at),
                     from.begin() + static_cast<std::ptrdiff_t>(at + len));
        };
        cp8(a.packed, c0 * rb, n * rb, &b.packed);
        cpf(a.scales, c0 * ns, n * ns, &b.scales);
        cp8(ca.qk, r0 * rb, n * rb, &cb.qk);
        cp8(ca.qv, r0 * rb, n * rb, &cb.qv);
        cpf(ca.k_scales, r0 * ns, n * ns, &cb.k_scales);
        cpf(ca.v_scales, r0 * ns, n * ns, &cb.v_scales);
      }
    }
    DocumentRecord nd = d;
    nd.chunk_begin = chunk;
    chunk += d.n_chunks;
    DocSource ds;
    ds.ram_chunk = nd.chunk_begin;
    docs.push_back(std::move(nd));
    src.push_back(ds);
  }
  docs_ = std::move(docs);
  src_ = std::move(src);
  routing_ = std::move(routing);
  content_ = std::move(content);
  ram_chunks_ = chunk;
  by_id_.clear();
  for (size_t i = 0; i < docs_.size(); ++i) by_id_.emplace(docs_[i].id, static_cast<int64_t>(i));
  removed_ids_.clear();
  n_removed_ = 0;
  bump_version_locked();
}

Status MemoryBank::verify() const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  for (const auto& seg : segments_) MSA_RETURN_IF_ERROR(seg->verify_content());
  return Status::Ok();
}

}  // namespace msa
