#include "engine/encoder.h"

#include <algorithm>
#include <string>
#include <unordered_set>
#include <utility>

#include "core/limits.h"
#include "engine/template_prefix.h"
#include "memory/memory_bank.h"
#include "router/router.h"
#include "memory/bank_fingerprint.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

// Batching independence. The pooled memory of a document must not depend on which other documents shared its
// forward call. Per row, the CPU forward is independent of the batch: rmsnorm, RoPE, SwiGLU, adds and the
// embedding are row-wise; attention of a token reads exactly the rows of its own segment, in order; the GEMM
// kernel accumulates every output element in the same order whatever the number of rows or the row's position
// (per-row FMA chains over 256-wide K slices). The exception is the matmul kernel choice: few rows (currently
// <= 8 on the CPU backend) take the GEMV path, whose summation order differs. A document of a few tokens
// encoded alone, or a 1-row remainder of forward()'s MLP sub-batches (mlp_chunk_rows), would then get other
// values than the same document packed with others. encode_batch therefore (1) pads every forward call to at
// least kMinRows rows with a separate padding segment (its attention never reaches the documents, its rows are
// not pooled) and (2) picks an mlp_chunk_rows whose sub-batches all hold >= kMinRows rows.

namespace msa {

namespace {

constexpr int64_t kMlpChunkRows = 512;
// Every matmul of an encode forward gets at least this many rows (far above any GEMV threshold).
constexpr int64_t kMinRows = 64;

// MLP sub-batch size <= kMlpChunkRows whose last sub-batch has 0 or >= kMinRows rows (n >= kMinRows).
int64_t mlp_rows_for(int64_t n) {
  if (n <= kMlpChunkRows) return n;
  for (int64_t r = kMlpChunkRows; r >= kMinRows; --r) {
    if (n % r == 0 || n % r >= kMinRows) return r;
  }
  return n;  // one sub-batch (more scratch, same arithmetic)
}

// Pools K, V and routing keys of every document of a packed batch at the router layers, on the backend, into
// one [total chunks, width] buffer per (router slot, kind) — downloaded once per batch (Encoder::encode_batch).
// The forward stops after the last router layer (ForwardOptions::last_layer).
class PoolingObserver final : public ForwardObserver {
 public:
  PoolingObserver(const DeviceModel& dm, const std::vector<int64_t>& offsets, const std::vector<int64_t>& lengths,
                  const std::vector<int64_t>& chunk_offsets, PoolBuffers* bufs)
      : dm_(dm), offsets_(offsets), lengths_(lengths), chunk_offsets_(chunk_offsets), bufs_(bufs) {
    const ModelConfig& c = dm.config();
    slot_of_layer_.assign(static_cast<size_t>(c.num_hidden_layers), -1);
    for (size_t s = 0; s < c.msa.router_layers.size(); ++s) {
      slot_of_layer_[static_cast<size_t>(c.msa.router_layers[s])] = static_cast<int>(s);
    }
  }

  Status before_attention(const LayerActivations& act, LayerKV*) override {
    const int slot = slot_of_layer_[static_cast<size_t>(act.layer)];
    if (slot < 0) return Status::Ok();
    const ModelConfig& c = dm_.config();
    Backend* be = act.backend;
    const int64_t width = c.num_key_value_heads * c.head_dim;
    const int64_t pool = c.msa.pooling_kernel_size;
    const bool decouple = c.msa.decouple_router;
    float* pk = bufs_->k[static_cast<size_t>(slot)].as<float>();
    float* pv = bufs_->v[static_cast<size_t>(slot)].as<float>();
    float* prk = bufs_->rk[static_cast<size_t>(slot)].as<float>();
    if (decouple) {
      const TensorView& rk = dm_.weights().views().layers[static_cast<size_t>(act.layer)].router_k;
      if (rk.empty()) {
        return Error(StatusCode::kMissingTensor, "router layer ", act.layer, " has no router_k_proj weight");
      }
      MSA_RETURN_IF_ERROR(be->ensure(&bufs_->rk_rows, static_cast<size_t>(act.n_tokens * width) * sizeof(float)));
      MSA_RETURN_IF_ERROR(be->matmul(act.a, act.n_tokens, rk, bufs_->rk_rows.as<float>()));
    }
    for (size_t j = 0; j < offsets_.size(); ++j) {
      const int64_t off = offsets_[j] * width, len = lengths_[j], out = chunk_offsets_[j] * width;
      be->mean_pool(act.k + off, len, width, pool, pk + out);
      be->mean_pool(act.v + off, len, width, pool, pv + out);
      if (decouple) be->mean_pool(bufs_->rk_rows.as<float>() + off, len, width, pool, prk + out);
    }
    const int64_t n_chunks = chunk_offsets_.back();
    if (!decouple) MSA_RETURN_IF_ERROR(be->copy(prk, pk, static_cast<size_t>(n_chunks * width) * sizeof(float)));
    if (c.msa.normalize_routing()) be->l2_normalize(prk, n_chunks * c.num_key_value_heads, c.head_dim);
    return Status::Ok();
  }

 private:
  const DeviceModel& dm_;
  const std::vector<int64_t>& offsets_;
  const std::vector<int64_t>& lengths_;
  const std::vector<int64_t>& chunk_offsets_;
  PoolBuffers* bufs_;
  std::vector<int> slot_of_layer_;
};

}  // namespace

std::string format_memory_document(uint64_t id, std::string_view text) {
  const std::string n = std::to_string(id);
  std::string s;
  s.reserve(text.size() + 2 * n.size() + 32);
  s.append("<|im_start|>[").append(n).append("]. ").append(text).append("[").append(n).append("]<|im_end|>");
  return s;
}

Status compute_template_prefix(const DeviceModel& dm, std::vector<std::vector<float>>* k,
                               std::vector<std::vector<float>>* v) {
  std::vector<int32_t> head;
  MSA_RETURN_IF_ERROR(template_head_ids(dm.model(), &head));
  return compute_template_kv(dm.weights(), head, k, v);
}

Status create_memory_bank(const DeviceModel& dm, std::unique_ptr<MemoryBank>* out, PageDType dtype) {
  if (out == nullptr) return Error(StatusCode::kInvalidArgument, "create_memory_bank: out is null");
  const Model& model = dm.model();
  std::vector<std::vector<float>> k, v;
  MSA_RETURN_IF_ERROR(compute_template_prefix(dm, &k, &v));
  MSA_RETURN_IF_ERROR(MemoryBank::create(model.config(), std::move(k), std::move(v), out, dtype));
  (*out)->set_fingerprint(model_fingerprint(model));
  return Status::Ok();
}

Status create_memory_bank(const Model& model, Backend* backend, std::unique_ptr<MemoryBank>* out, PageDType dtype) {
  std::unique_ptr<DeviceModel> dm;
  MSA_RETURN_IF_ERROR(DeviceModel::create(model, backend, &dm));
  return create_memory_bank(*dm, out, dtype);
}

Encoder::Encoder(const DeviceModel& dm, EncoderOptions options)
    : model_(dm.model()), dm_(&dm), options_(std::move(options)) {
  kv_.init(model_.config(), dm.backend());
}

Encoder::Encoder(const Model& model, EncoderOptions options) : model_(model), options_(std::move(options)) {
  init_ = DeviceModel::create(model, options_.backend, &owned_);
  if (init_.ok()) {
    dm_ = owned_.get();
    kv_.init(model_.config(), dm_->backend());
  }
}

Status Encoder::encode_batch(const std::vector<std::vector<int32_t>>& tokens, size_t first, size_t count,
                             EncodedDocuments* out) {
  const ModelConfig& c = model_.config();
  std::vector<int32_t> ids, pos, seg;
  std::vector<int64_t> offsets, lengths;
  for (size_t j = 0; j < count; ++j) {
    const std::vector<int32_t>& t = tokens[first + j];
    offsets.push_back(static_cast<int64_t>(ids.size()));
    lengths.push_back(static_cast<int64_t>(t.size()));
    ids.insert(ids.end(), t.begin(), t.end());
    for (size_t i = 0; i < t.size(); ++i) {
      pos.push_back(static_cast<int32_t>(i));
      seg.push_back(static_cast<int32_t>(j));
    }
  }
  if (c.msa.router_layers.empty()) return Status::Ok();  // nothing to pool (plain Qwen3 checkpoint)
  if (static_cast<int64_t>(ids.size()) < kMinRows) {
    // Padding segment (see "Batching independence"): the batch's first token repeated, its own segment id.
    const int64_t pad = kMinRows - static_cast<int64_t>(ids.size());
    for (int64_t i = 0; i < pad; ++i) {
      ids.push_back(tokens[first][0]);
      pos.push_back(static_cast<int32_t>(i));
      seg.push_back(static_cast<int32_t>(count));
    }
  }

  // Chunk offsets of the batch's documents in the pooled buffers.
  const int64_t width = c.num_key_value_heads * c.head_dim;
  std::vector<int64_t> chunk_offsets{0};
  for (size_t j = 0; j < count; ++j) chunk_offsets.push_back(chunk_offsets.back() + out->pooled[first + j].n_chunks);
  const int64_t n_chunks = chunk_offsets.back();
  const size_t n_slots = c.msa.router_layers.size();
  Backend* be = dm_->backend();
  pool_.k.resize(n_slots);
  pool_.v.resize(n_slots);
  pool_.rk.resize(n_slots);
  const size_t bytes = static_cast<size_t>(n_chunks * width) * sizeof(float);
  for (size_t s = 0; s < n_slots; ++s) {
    MSA_RETURN_IF_ERROR(be->ensure(&pool_.k[s], bytes));
    MSA_RETURN_IF_ERROR(be->ensure(&pool_.v[s], bytes));
    MSA_RETURN_IF_ERROR(be->ensure(&pool_.rk[s], bytes));
  }

  PoolingObserver obs(*dm_, offsets, lengths, chunk_offsets, &pool_);
  ForwardBatch b;
  b.tokens = ids.data();
  b.positions = pos.data();
  b.segments = seg.data();
  b.n_tokens = static_cast<int64_t>(ids.size());
  ForwardOptions o;
  o.logits = LogitsMode::kNone;
  o.keep_kv = false;
  o.observer = &obs;
  o.last_layer = c.msa.router_layers.back();
  o.stop_before_attention = true;  // pooling happens in the hook; the layer's attention and MLP would be wasted
  o.mlp_chunk_rows = mlp_rows_for(b.n_tokens);
  kv_.clear();
  MSA_RETURN_IF_ERROR(forward(dm_->weights(), b, &kv_, o, &workspace_, nullptr, 0));

  // One download per (slot, kind) for the whole batch, then split per document on the host.
  for (size_t s = 0; s < n_slots; ++s) {
    const DeviceBuffer* src[3] = {&pool_.k[s], &pool_.v[s], &pool_.rk[s]};
    for (int kind = 0; kind < 3; ++kind) {
      host_.resize(static_cast<size_t>(n_chunks * width));
      MSA_RETURN_IF_ERROR(be->download(host_.data(), src[kind]->data(), bytes));
      for (size_t j = 0; j < count; ++j) {
        PooledDocument& pd = out->pooled[first + j];
        std::vector<float>& dst = kind == 0 ? pd.k[s] : kind == 1 ? pd.v[s] : pd.rk[s];
        std::copy_n(host_.data() + chunk_offsets[j] * width, pd.n_chunks * width, dst.begin());
      }
    }
  }
  return Status::Ok();
}

Status Encoder::encode(const std::vector<std::string_view>& texts, const std::vector<uint64_t>& ids,
                       EncodedDocuments* out) {
  if (out == nullptr) return Error(StatusCode::kInvalidArgument, "encode: out is null");
  MSA_RETURN_IF_ERROR(init_);
  const Tokenizer* tok = model_.tokenizer();
  if (tok == nullptr) {
    return Error(StatusCode::kInvalidArgument, "encode: the model was loaded without its tokenizer");
  }
  if (texts.empty()) return Error(StatusCode::kInvalidArgument, "encode: the document list is empty");
  if (ids.size() != texts.size()) {
    return Error(StatusCode::kInvalidArgument, "encode: ", ids.size(), " ids for ", texts.size(), " documents");
  }
  if (options_.batch_tokens <= 0) {
    return Error(StatusCode::kInvalidArgument, "encode: batch_tokens must be > 0, got ", options_.batch_tokens);
  }
  {
    std::unordered_set<uint64_t> seen;
    for (size_t i = 0; i < ids.size(); ++i) {
      if (!seen.insert(ids[i]).second) {
        return Error(StatusCode::kInvalidArgument, "encode: document ", i, " repeats id ", ids[i]);
      }
    }
  }
  for (size_t i = 0; i < texts.size(); ++i) {
    if (texts[i].empty()) {
      return Error(StatusCode::kInvalidArgument, "encode: document ", i, " (id ", ids[i], ") is empty");
    }
    if (!tok::utf8_is_valid(texts[i])) {
      return Error(StatusCode::kInvalidUtf8, "encode: document ", i, " (id ", ids[i], ") is not valid UTF-8");
    }
  }

  const ModelConfig& c = model_.config();
  const int64_t limit = c.max_position_embeddings;
  std::vector<std::vector<int32_t>> tokens(texts.size());
  int64_t tokens_total = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    MSA_RETURN_IF_ERROR(tok->encode(format_memory_document(ids[i], texts[i]), &tokens[i]));
    const int64_t n = static_cast<int64_t>(tokens[i].size());
    if (n > limits::kMaxDocumentTokens) {  // binds only where max_position_embeddings is larger (or unset)
      return Error(StatusCode::kContextOverflow, "encode: document ", i, " (id ", ids[i], ") is ", n,
                   " tokens once formatted, more than MSA_MAX_DOCUMENT_TOKENS (", limits::kMaxDocumentTokens, ")");
    }
    if (limit > 0 && n > limit) {
      return Error(StatusCode::kContextOverflow, "encode: document ", i, " (id ", ids[i], ") is ", n,
                   " tokens once formatted, more than max_position_embeddings = ", limit);
    }
    tokens_total += n;
  }

  EncodedDocuments result;
  const int64_t width = c.num_key_value_heads * c.head_dim;
  const int64_t pool = c.msa.pooling_kernel_size;
  const size_t n_slots = c.msa.router_layers.size();
  result.records.resize(texts.size());
  result.pooled.resize(texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    const int64_t n = static_cast<int64_t>(tokens[i].size());
    DocumentRecord& r = result.records[i];
    r.id = ids[i];
    r.text = std::string(texts[i]);
    r.n_tokens = n;
    r.n_chunks = pool > 0 ? (n + pool - 1) / pool : 0;
    PooledDocument& p = result.pooled[i];
    p.n_tokens = n;
    p.n_chunks = r.n_chunks;
    const size_t sz = static_cast<size_t>(p.n_chunks * width);
    p.k.assign(n_slots, std::vector<float>(sz));
    p.v.assign(n_slots, std::vector<float>(sz));
    p.rk.assign(n_slots, std::vector<float>(sz));
  }

  EncodeProgress progress;
  progress.documents_total = static_cast<int64_t>(texts.size());
  progress.tokens_total = tokens_total;
  size_t i = 0;
  while (i < texts.size()) {
    // Pack documents in order up to the token budget; a document over the budget runs alone.
    size_t count = 1;
    int64_t n = static_cast<int64_t>(tokens[i].size());
    while (i + count < texts.size() && n + static_cast<int64_t>(tokens[i + count].size()) <= options_.batch_tokens) {
      n += static_cast<int64_t>(tokens[i + count].size());
      ++count;
    }
    MSA_RETURN_IF_ERROR(encode_batch(tokens, i, count, &result));
    i += count;
    progress.documents_done = static_cast<int64_t>(i);
    progress.tokens_done += n;
    if (options_.progress && options_.progress(progress) != 0) {
      return Error(StatusCode::kCancelled, "encode: cancelled by the progress callback after ",
                   progress.documents_done, " of ", progress.documents_total, " documents");
    }
  }
  *out = std::move(result);
  return Status::Ok();
}

Status Encoder::add_documents(MemoryBank* bank, const std::vector<std::string_view>& texts,
                              const std::vector<uint64_t>* ids, std::vector<uint64_t>* assigned_ids) {
  if (bank == nullptr) return Error(StatusCode::kInvalidArgument, "add_documents: bank is null");
  {
    BankReadLock lock(bank);  // a concurrent compact rewrites what the check reads
    MSA_RETURN_IF_ERROR(check_bank_matches(model_.config(), *bank));
  }
  // The cheap checks of encode() first: they need no ids.
  if (model_.tokenizer() == nullptr) {
    return Error(StatusCode::kInvalidArgument, "encode: the model was loaded without its tokenizer");
  }
  if (texts.empty()) return Error(StatusCode::kInvalidArgument, "encode: the document list is empty");
  if (ids != nullptr && ids->size() != texts.size()) {
    return Error(StatusCode::kInvalidArgument, "encode: ", ids->size(), " ids for ", texts.size(), " documents");
  }
  if (options_.batch_tokens <= 0) {
    return Error(StatusCode::kInvalidArgument, "encode: batch_tokens must be > 0, got ", options_.batch_tokens);
  }
  // The ids are written into the encoded documents: hold them in the bank before encoding, so that concurrent
  // adders (and their automatic ids) never collide; released on any error below.
  IdReservation reservation;
  if (ids != nullptr) {
    MSA_RETURN_IF_ERROR(bank->reserve_ids(*ids, &reservation));
  } else {
    MSA_RETURN_IF_ERROR(bank->reserve_ids(texts.size(), &reservation));
  }
  std::vector<uint64_t> use_ids = reservation.ids();
  EncodedDocuments enc;
  MSA_RETURN_IF_ERROR(encode(texts, use_ids, &enc));
  MSA_RETURN_IF_ERROR(bank->add(std::move(enc.records), std::move(enc.pooled), &reservation));
  if (assigned_ids) *assigned_ids = std::move(use_ids);
  return Status::Ok();
}

}  // namespace msa
