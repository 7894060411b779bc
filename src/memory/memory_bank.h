// MemoryBank: what stage 1 produced for a corpus (spec §4.4-4.6, ARCHITECTURE.md "MemoryBank"):
//   * DocStore      — per document: caller id, original text, token count, chunk range (Memory Interleave
//                     re-reads the text);
//   * per router layer (in the order of ModelConfig::msa.router_layers):
//       RoutingIndex  — pooled router keys K̄ᴿ, contiguous [n_chunks, n_kv_heads*head_dim], plus the
//                       chunk -> document map: the *routing tier* (scanned for every query; the engine makes
//                       it resident on the model's backend, engine/resident_bank.h: GPU memory on CUDA, this
//                       RAM copy itself on the CPU);
//       ContentPages  — pooled K̄ (post k_norm + RoPE) and V̄, [n_chunks, n_kv_heads*head_dim] each, every
//                       document's chunks contiguous and in order: the *content tier* (host RAM or mapped
//                       files; the top-k documents' raw pages are staged per router layer, stage_pages());
//   * the template-prefix K/V of every layer ([3, n_kv_heads*head_dim], positions 0..2).
// Pages are held in the bank's page dtype (page_codec.h: f32 | bf16 | int8, chosen at create time): RoutingIndex
// keeps the routing rows in RAM in that dtype (the backend's scan dequantises as it goes); content pages
// live in RAM (documents added in this process) or stay in the mmap'd segment files of an opened bank, zstd
// frames decompressed and checksum-verified on every read (read_pages()).
//
// Persistence (docs/FORMAT.md): open() / save() / remove() / compact(); once a bank is attached to a directory
// (opened or saved) every add() and remove() commits to it before returning (crash-safe: new files under
// temporary names, fsync, rename, then the MANIFEST replaced atomically; a failed write removes its temporary).
// Writers (docs/FORMAT.md "Writers"): opening never locks; the first write of a handle to its directory (add,
// reserve_ids, remove, compact, save) takes its process's writer lock on BANK/LOCK (bank_dir.h), shared by the
// handles of the process and held until the handle is destroyed or saved elsewhere; a handle of another process
// then gets kBusy. Before every commit the handle re-reads MANIFEST: if another handle or process committed since
// this one opened (or last committed), the write is refused with kBusy ("changed on disk ...; reopen") and nothing
// is written. Garbage collection never deletes a segment a live handle of this process maps.
//
// Thread-safety: readers (routing, generation) take `lock_shared()`; add() takes the writer lock itself.
// Concurrent adders reserve their ids first (reserve_ids, under the writer lock, checked against live, removed
// and reserved ids), encode (the id is part of the encoded text), then add() with the reservation.
// Every const accessor (document(), find(), routing(), stats(), ...) reads unguarded state: call it under
// lock_shared() whenever another thread may add() concurrently. References it returns stay valid only
// while the shared lock is held (add() may reallocate).
// A bank is tied to the model configuration it was built for (fingerprint()).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "core/status.h"
#include "memory/bank_dir.h"
#include "memory/bank_format.h"
#include "memory/page_codec.h"
#include "model/config.h"

namespace msa {

class ThreadPool;

struct DocumentRecord {
  uint64_t id = 0;          // caller-supplied id (or the next index); unique in the bank
  std::string text;         // the original document text (not the formatted prompt)
  int64_t n_tokens = 0;     // tokens of the formatted document (spec §3.2)
  int64_t chunk_begin = 0;  // first chunk in every layer's RoutingIndex/ContentPages
  int64_t n_chunks = 0;     // ceil(n_tokens / pooling_kernel_size)
  bool removed = false;     // tombstoned by remove(): never routed to, never found; dropped by compact()
};

// Stage-1 output for one document, before it enters a bank. Each vector holds one entry per router layer
// (ModelConfig::msa.router_layers order) of [n_chunks, width] floats, width = n_kv_heads * head_dim.
struct PooledDocument {
  int64_t n_tokens = 0;
  int64_t n_chunks = 0;
  std::vector<std::vector<float>> k;   // pooled attention keys K̄
  std::vector<std::vector<float>> v;   // pooled values V̄
  std::vector<std::vector<float>> rk;  // routing keys (K̄ᴿ, or K̄ when decouple_router is false), already
                                       // L2-normalised per (chunk, head) exactly when the config says so
};

// std::allocator that default-initialises (no zero-fill on resize): the routing index of a large bank is read
// straight into a resized buffer, and zeroing gigabytes first would double the cost of opening it.
template <typename T>
struct DefaultInitAllocator : std::allocator<T> {
  template <typename U>
  struct rebind {
    using other = DefaultInitAllocator<U>;
  };
  DefaultInitAllocator() = default;
  template <typename U>
  DefaultInitAllocator(const DefaultInitAllocator<U>&) noexcept {}
  template <typename U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... A>
  void construct(U* p, A&&... a) {
    ::new (static_cast<void*>(p)) U(std::forward<A>(a)...);
  }
};
using PageBytes = std::vector<uint8_t, DefaultInitAllocator<uint8_t>>;

struct RoutingIndex {
  PageDType dtype = PageDType::kF32;
  std::vector<float> keys;          // kF32: [n_chunks, width]
  PageBytes packed;                 // kBF16 / kInt8: [n_chunks, width] in the dtype
  std::vector<float> scales;        // kInt8: [n_chunks, n_kv_heads]
  std::vector<int32_t> chunk_doc;   // [n_chunks] document index (position in the DocStore) of each chunk
  int64_t n_chunks() const { return static_cast<int64_t>(chunk_doc.size()); }
  int64_t bytes() const;
};

// Content pages of the documents held in RAM (indexed by their RAM chunk offset; for a bank that was never
// opened from or saved to disk that is DocumentRecord::chunk_begin).
struct ContentPages {
  PageDType dtype = PageDType::kF32;
  std::vector<float> k;  // kF32: [n_chunks, width]
  std::vector<float> v;  // kF32: [n_chunks, width]
  std::vector<uint8_t> qk, qv;           // kBF16 / kInt8
  std::vector<float> k_scales, v_scales; // kInt8: [n_chunks, n_kv_heads]
  int64_t bytes() const;
};

// Layout of the raw pages of documents d_0..d_{n-1} (in the order given) staged by MemoryBank::stage_pages, for
// page dtype t, width W = n_kv_heads * head_dim, S = page_row_scales(t, n_kv_heads), N = n_rows (the sum of the
// documents' n_chunks):
//   [K rows: N * page_row_bytes(t, W) bytes][K scales: N * S floats][V rows: same][V scales: same]
// each plane's rows in document order, every document's chunks in order; every plane starts at a multiple of 64
// bytes from dst (a 64-byte aligned dst, e.g. pinned staging memory, gives aligned planes; the padding is zero). f32 / bf16 have no scales (S = 0: empty planes). decode_rows(t, rows, scales, ...)
// of a plane gives what read_pages() gives, bit for bit.
struct StagedPagesLayout {
  PageDType dtype = PageDType::kF32;
  int64_t n_rows = 0;
  size_t k_rows = 0, k_scales = 0, v_rows = 0, v_scales = 0;  // byte offsets of the planes
  size_t bytes = 0;  // total: the end of the V scales rounded up to a multiple of 64
};

struct BankOpenOptions {
  bool verify_content = false;  // true: every content frame's checksum at open; false: on each read
};

struct MemoryStats {
  int64_t n_documents = 0;
  int64_t n_chunks = 0;       // per router layer (the same in every layer)
  int64_t n_tokens = 0;
  int64_t routing_bytes = 0;  // routing tier (RAM copy), all router layers
  int64_t content_bytes = 0;  // content tier, all router layers
  int64_t text_bytes = 0;     // DocStore texts
  int64_t template_bytes = 0; // template-prefix K/V of every layer
  int64_t n_removed = 0;      // tombstoned documents (counted in n_documents' DocStore, not in n_documents)
  int64_t content_ram_bytes = 0;   // part of content_bytes held in RAM (page dtype)
  int64_t content_file_bytes = 0;  // part of content_bytes left in mapped segment files (compressed)
  PageDType dtype = PageDType::kF32;
};

// xxh64 of the router layer indices as int32 (Fingerprint::router_layers_xxh64).
uint64_t router_layers_xxh64(const std::vector<int>& layers);
// The fields of a fingerprint that the configuration alone decides (shapes, router layers, pooling, rope theta,
// rms eps, aux_loss_method); tokenizer/weights digests, page_dtype and template_len are left 0.
bankfmt::Fingerprint shape_fingerprint(const ModelConfig& config);

// What a bank directory holds, read without a model (msa memory info / verify, the fuzz target).
using BankFiles = bankfmt::BankContents;
// bankfmt::read_bank_dir: reads and cross-checks dir/MANIFEST and every segment it lists (sizes, checksums,
// shapes against the fingerprint, unique ids, tombstones naming existing documents). verify_content: every
// content frame too.
Status read_bank_files(const std::string& dir, bool verify_content, BankFiles* out);

class MemoryBank;

// Ids held for an add in progress (MemoryBank::reserve_ids): no other reservation or add can take them until the
// reservation is consumed by MemoryBank::add or released (destructor, release()). Move-only; it must not outlive
// its bank.
class IdReservation {
 public:
  IdReservation() = default;
  ~IdReservation() { release(); }
  IdReservation(IdReservation&& o) noexcept;
  IdReservation& operator=(IdReservation&& o) noexcept;
  IdReservation(const IdReservation&) = delete;
  IdReservation& operator=(const IdReservation&) = delete;

  // The reserved ids, in order (automatic ones consecutive). Still readable after add() consumed them.
  std::vector<uint64_t> ids() const;
  size_t size() const { return explicit_ ? ids_.size() : static_cast<size_t>(count_); }
  // True while the ids are held (not yet added, not released).
  bool active() const { return bank_ != nullptr; }
  // Gives the ids back to the bank (nothing when not active).
  void release();

 private:
  friend class MemoryBank;
  MemoryBank* bank_ = nullptr;
  uint64_t token_ = 0;
  bool explicit_ = false;
  uint64_t first_ = 0, count_ = 0;  // automatic: [first_, first_ + count_)
  std::vector<uint64_t> ids_;       // explicit
};

class MemoryBank {
 public:
  // template_k / template_v: one [3 * width] vector per decoder layer (all layers, not only router ones).
  // The constructor trusts its arguments (router_layers, head shapes, template sizes); create() checks them.
  MemoryBank(const ModelConfig& config, std::vector<std::vector<float>> template_k,
             std::vector<std::vector<float>> template_v, PageDType dtype = PageDType::kF32);

  // Checked construction. Errors: kInvalidArgument (no msa_config / router layers, pooling_kernel_size < 1,
  // n_kv_heads * head_dim < 1, not one template K and V of 3 * width floats per decoder layer).
  static Status create(const ModelConfig& config, std::vector<std::vector<float>> template_k,
                       std::vector<std::vector<float>> template_v, std::unique_ptr<MemoryBank>* out,
                       PageDType dtype = PageDType::kF32);

  // Opens the bank directory `dir` for a model of configuration `config`. expect (may be null): the model's
  // fingerprint; a bank built for another model is refused (kInvalidArgument naming the differing field).
  // Routing keys are read into RAM; content pages stay in the mapped segments. The bank is attached to dir.
  // Errors: kIo, kTruncated, kCorrupt, kUnsupported (format version), kInvalidArgument (another model).
  static Status open(const std::string& dir, const ModelConfig& config, const bankfmt::Fingerprint* expect,
                     const BankOpenOptions& options, std::unique_ptr<MemoryBank>* out);

  // The fingerprint written by save() (set by the creator from the model; open() reads it from the bank).
  void set_fingerprint(const bankfmt::Fingerprint& fp);
  const bankfmt::Fingerprint& fingerprint() const { return fp_; }
  PageDType dtype() const { return dtype_; }
  // The directory the bank is attached to ("" when none). Unguarded, like the other accessors.
  std::string path() const;

  // Writes the live documents to `dir` (created if needed) as a fresh bank, atomically: until the new MANIFEST
  // is renamed into place a reader sees the previous bank of dir (if any) complete. The bank is then attached
  // to dir (and its content pages served from the new segment). Writer lock.
  // stats (may be null): compression figures of the content frames written (docs/FORMAT.md measurements).
  Status save(const std::string& dir, bankfmt::WriteStats* stats = nullptr);
  // Tombstones documents (all or none; committed first when attached). Errors: kInvalidArgument (an id not in
  // the bank or already removed, a duplicate in ids). Writer lock.
  Status remove(const std::vector<uint64_t>& ids);
  // Drops tombstoned documents: attached, rewrites the bank directory (as save(path())); else in RAM.
  Status compact();
  // Full checksum pass of every content frame in the attached segment files. Shared lock inside.
  Status verify() const;
  // Decodes document `index`'s K̄ and V̄ pages of router slot `slot` into k and v ([n_chunks, width] f32 each).
  // Errors: kCorrupt (a frame of a mapped segment fails its checksum), kInternal.
  Status read_pages(int router_slot, int64_t index, float* k, float* v) const;

  // Batched raw-page staging, what a router layer gathers instead of one read_pages() per document. Both read
  // unguarded state like the other accessors: call them under lock_shared().
  // The layout (StagedPagesLayout) of these documents (DocStore indices, tombstoned ones included; repeats allowed).
  // Errors: kInvalidArgument (null out, null indices with n > 0, an index outside [0, n_documents()), a size past
  // the address space).
  Status staged_layout(const int64_t* indices, size_t n, StagedPagesLayout* out) const;
  // Writes the raw (not decoded: f32 / bf16 / int8 + scales, as stored) K̄ / V̄ pages of router slot `slot` of the
  // documents into dst (cap >= layout.bytes) in that layout: RAM pages are copied, frames of mapped segments
  // checksum-verified and decompressed straight into place. One call per router layer. layout (may be null)
  // receives the layout as soon as the indices are checked (also when cap is too small). pool (may be null): the
  // documents are staged in parallel on it (each into its own rows; the bytes do not depend on the pool); the
  // error reported is then the first failing document's in the given order, as without a pool.
  // Errors: kInvalidArgument (bad slot or index, cap too small, null dst), kCorrupt (a frame fails its checksum
  // or does not decompress: the message names the file, the router slot and the document id), kOutOfMemory,
  // kInternal.
  Status stage_pages(int slot, const int64_t* indices, size_t n, uint8_t* dst, size_t cap,
                     StagedPagesLayout* layout, ThreadPool* pool = nullptr) const;

  const ModelConfig& config() const { return config_; }
  int64_t width() const { return width_; }
  int n_router_layers() const { return static_cast<int>(routing_.size()); }

  // Appends documents atomically (all or none), under the writer lock. docs[i].chunk_begin/n_chunks are
  // assigned by the bank; docs[i].n_tokens must equal pooled[i].n_tokens. reservation (may be null): the ids
  // reserved for these documents (docs' ids must be exactly its ids); consumed on success, left active on error.
  // Errors: kInvalidArgument (sizes disagree, n_tokens < 1, n_chunks != ceil(n_tokens / P), a non-finite pooled
  // value, an id equal to UINT64_MAX (reserved so that next_id() is always free), a duplicate id, in the batch or
  // against the bank, an id reserved by another add in progress, ids other than the reservation's, the bank
  // would hold more than limits::kMaxBankDocuments documents, live + removed + reserved), kOutOfMemory (nothing
  // was added); attached: kBusy (another process writes the directory, or it changed on disk since this handle
  // read it: reopen), kIo (nothing was added; "disk full" when the segment did not fit).
  Status add(std::vector<DocumentRecord> docs, std::vector<PooledDocument> pooled,
             IdReservation* reservation = nullptr);

  // Reserves `n` automatic ids: consecutive, from max(next_id(), every reserved id + 1). Atomic with respect to
  // other reservations and adds (writer lock). An attached bank also takes the directory's writer lock and checks
  // the manifest now, so that a conflicting writer is reported before the documents are encoded.
  // Errors: kInvalidArgument (n == 0, ids exhausted (the last would be UINT64_MAX), the bank would exceed
  // limits::kMaxBankDocuments), kBusy, kIo.
  Status reserve_ids(size_t n, IdReservation* out);
  // Reserves the given ids (all or none). Errors: kInvalidArgument (empty, UINT64_MAX, a duplicate in ids, an id
  // in the bank, removed (reserved until compact()) or reserved by another add, past kMaxBankDocuments), kBusy, kIo.
  Status reserve_ids(const std::vector<uint64_t>& ids, IdReservation* out);

  // DocStore size: live and tombstoned documents (indices of routing results refer to it).
  int64_t n_documents() const { return static_cast<int64_t>(docs_.size()); }
  int64_t n_live_documents() const { return static_cast<int64_t>(docs_.size()) - n_removed_; }
  bool is_removed(int64_t index) const { return docs_[static_cast<size_t>(index)].removed; }
  const DocumentRecord& document(int64_t index) const { return docs_[static_cast<size_t>(index)]; }
  // Index of the live document with this id, or -1 (tombstoned documents are not found).
  int64_t find(uint64_t id) const;
  // The first id reserve_ids(n) would hand out now: max id + 1 (0 for an empty bank), past every reserved id.
  uint64_t next_id() const;
  // Ids held by reservations not yet added or released.
  int64_t n_reserved_ids() const { return n_reserved_; }

  // True when `id` belongs to a tombstoned document (ids stay reserved until compact()).
  bool is_removed_id(uint64_t id) const { return removed_ids_.count(id) != 0; }

  // router_slot: index into ModelConfig::msa.router_layers.
  const RoutingIndex& routing(int router_slot) const { return routing_[static_cast<size_t>(router_slot)]; }
  // RAM content pages (see ContentPages); read_pages() serves every document wherever it lives.
  const ContentPages& content(int router_slot) const { return content_[static_cast<size_t>(router_slot)]; }
  const std::vector<float>& template_k(int layer) const { return template_k_[static_cast<size_t>(layer)]; }
  const std::vector<float>& template_v(int layer) const { return template_v_[static_cast<size_t>(layer)]; }
  int64_t template_len() const { return 3; }

  // Sizes of what is stored (element counts x element size, not allocated capacity).
  MemoryStats stats() const;

  // Strictly increases on every change a reader can observe: add(), remove(), compact(), save() (re-attachment:
  // pages served from the new files), set_fingerprint(); anything that changes routing(), content(), read_pages(),
  // the documents or the tombstones. A call that fails, or changes nothing (an empty batch, compact() of a bank in
  // RAM with nothing removed), leaves it as it is; so do id reservations (reserve_ids(), release): they store no
  // document. A cache of the routing index kept elsewhere, e.g. on a GPU, re-syncs when it changes.
  // Values come from one process-wide counter: a bank made later (create(), open()) starts above every version
  // shown before, so no two banks of the process ever show the same value (not even one created at the address of
  // a freed one). Read it under lock_shared() like the other accessors, so that it describes the state they
  // return; the read itself is atomic.
  uint64_t version() const { return version_.load(std::memory_order_relaxed); }
  // The version() of the last change that may have altered what was already there: rows of the routing index,
  // the chunk -> document map, the order or ids of the documents, the template K/V (create(), open(), compact(),
  // save() re-attachment, set_fingerprint()). add() (documents and chunks appended at the end) and remove()
  // (tombstones set) leave it as it is. While it stays put, a copy of the routing index kept elsewhere (on a GPU)
  // may be brought up to date by copying the appended rows and the tombstone flags only (ResidentBank::sync).
  uint64_t layout_version() const { return layout_version_.load(std::memory_order_relaxed); }

  void lock_shared() const { mu_.lock_shared(); }
  void unlock_shared() const { mu_.unlock_shared(); }

 private:
  // Where a document's content pages are: RAM (segment < 0, rows from ram_chunk) or a mapped segment.
  struct DocSource {
    int32_t segment = -1;
    uint32_t seg_doc = 0;
    int64_t ram_chunk = 0;
  };
  // Ids held by a reservation: automatic ones as a range, explicit ones as a set.
  struct Reserved {
    uint64_t first = 0, count = 0;      // automatic: [first, first + count)
    std::unordered_set<uint64_t> ids;   // explicit
    uint64_t top = 0;                   // largest reserved id + 1
    bool holds(uint64_t id) const { return count > 0 ? id >= first && id - first < count : ids.count(id) != 0; }
    size_t size() const { return count > 0 ? static_cast<size_t>(count) : ids.size(); }
  };
  // The reservation (token) holding `id`, or 0.
  uint64_t reserved_by(uint64_t id) const;
  void add_reservation_locked(Reserved r, IdReservation* out);
  // add(), step by step, with mu_ held exclusively: check the batch (nothing changes on error), encode its pages
  // into the bank's dtype, reserve capacity, index the ids (rolled back on error), commit a new segment (attached
  // banks; the id index rolled back if it fails), consume the reservation, append (cannot fail).
  struct EncodedPages;  // one router layer of a batch, encoded (memory_bank.cpp)
  Status add_locked(std::vector<DocumentRecord>& docs, std::vector<PooledDocument>& pooled, IdReservation* res);
  // Every check of add(); *mine: the reservation's record (null without one), *new_chunks: the batch's chunks.
  Status check_add_batch_locked(const std::vector<DocumentRecord>& docs, const std::vector<PooledDocument>& pooled,
                                const IdReservation* res, const Reserved** mine, int64_t* new_chunks) const;
  // res (may be null) is active for this bank and holds as many ids as the batch has documents.
  Status find_reservation_locked(const IdReservation* res, size_t n_docs, const Reserved** mine) const;
  // Document i's id (of an add or a reservation) against the bank (live, removed), the batch so far (batch_ids,
  // which it joins) and the reservations (mine's, or nobody else's).
  Status check_new_id_locked(size_t i, uint64_t id, const Reserved* mine,
                             std::unordered_set<uint64_t>* batch_ids) const;
  Status encode_batch(const std::vector<PooledDocument>& pooled, int64_t new_chunks,
                      std::vector<EncodedPages>* enc) const;
  Status reserve_capacity_locked(size_t n_docs, int64_t new_chunks);
  Status index_ids_locked(const std::vector<DocumentRecord>& docs);
  Status commit_segment_locked(const std::vector<DocumentRecord>& docs, const std::vector<PooledDocument>& pooled,
                               const std::vector<EncodedPages>& enc);
  void consume_reservation_locked(IdReservation* res);
  void append_locked(std::vector<DocumentRecord>& docs, const std::vector<PooledDocument>& pooled,
                     const std::vector<EncodedPages>& enc);
  void release_reservation(uint64_t token);
  friend class IdReservation;
  // Writers of an attached bank: the directory's writer lock for this handle (kBusy when another process holds
  // it), and the check that MANIFEST is still what this handle last read or wrote (kBusy otherwise). `what`
  // prefixes the messages. Both with mu_ held; check_unchanged_locked also with the directory's commit mutex.
  Status begin_write_locked(const char* what);
  Status check_unchanged_locked(const char* what) const;
  Status save_locked(const std::string& dir, bankfmt::WriteStats* stats, const char* what);
  Status commit_manifest_locked(std::vector<bankfmt::SegmentRef> segments, std::vector<uint64_t> tombstones);
  bankfmt::Manifest manifest_for(std::vector<bankfmt::SegmentRef> segments, std::vector<uint64_t> tombstones,
                                 uint64_t generation) const;
  Status raw_frame_locked(int slot, int64_t index, bankfmt::FrameIn* frame) const;
  // The RAM pages (src_[index].segment < 0) of a document in router slot `slot`, as stored, as the four frame
  // parts: K rows, K scales, V rows, V scales (scales empty unless int8). kInternal when they lie past the pages.
  struct RamParts {
    const uint8_t* data[4] = {};
    size_t bytes[4] = {};
  };
  Status ram_parts_locked(int slot, int64_t index, RamParts* out) const;
  // Stages the raw pages of document `index` at row `row` of layout l into dst (stage_pages' body for one
  // document).
  Status stage_document_locked(int slot, int64_t index, const StagedPagesLayout& l, size_t row, uint8_t* dst,
                               bankfmt::FrameScratch* scratch) const;
  void compact_in_ram_locked();
  void take_state(MemoryBank&& o);
  // version_ = the next value of the process-wide counter (with mu_ held exclusively, or in the constructor);
  // layout_version_ follows it unless the change only appended (add) or set tombstones (remove).
  enum class Change { kRewrite, kAppend, kTombstones };
  void bump_version_locked(Change change = Change::kRewrite);

  ModelConfig config_;
  int64_t width_ = 0;
  PageDType dtype_ = PageDType::kF32;
  std::vector<DocumentRecord> docs_;
  std::vector<DocSource> src_;
  std::unordered_map<uint64_t, int64_t> by_id_;
  std::unordered_set<uint64_t> removed_ids_;
  int64_t n_removed_ = 0;
  uint64_t next_id_ = 0;
  std::vector<RoutingIndex> routing_;
  std::vector<ContentPages> content_;
  int64_t ram_chunks_ = 0;
  std::vector<std::vector<float>> template_k_, template_v_;
  bankfmt::Fingerprint fp_;
  // Attachment: directory, the committed manifest's generation and segments, the mapped segments.
  std::string path_;
  uint64_t generation_ = 0;
  std::vector<bankfmt::SegmentRef> seg_refs_;
  std::vector<std::shared_ptr<const bankfmt::SegmentFile>> segments_;
  std::shared_ptr<bankfmt::BankDir> dir_;  // this process's entry of the attached directory
  bankfmt::WriterLock writer_;             // held from the first write to the attached directory on
  // Reservations of adds in progress, by token.
  std::unordered_map<uint64_t, Reserved> reserved_;
  uint64_t next_token_ = 1;
  int64_t n_reserved_ = 0;
  std::atomic<uint64_t> version_{0};         // see version()
  std::atomic<uint64_t> layout_version_{0};  // see layout_version()
  mutable std::shared_mutex mu_;
};

// RAII reader lock on a MemoryBank (null: no-op): what every reader (routing, generation, stats) holds.
class BankReadLock {
 public:
  explicit BankReadLock(const MemoryBank* bank) : bank_(bank) {
    if (bank_) bank_->lock_shared();
  }
  ~BankReadLock() {
    if (bank_) bank_->unlock_shared();
  }
  BankReadLock(const BankReadLock&) = delete;
  BankReadLock& operator=(const BankReadLock&) = delete;

 private:
  const MemoryBank* bank_;
};

// kInvalidArgument unless `bank` was built for a model of this shape (layers, width, router layers, P, template
// prefix sizes). Call under the bank's read lock (BankReadLock) when others may compact it.
Status check_bank_matches(const ModelConfig& model, const MemoryBank& bank);

}  // namespace msa
