#include "model/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <new>
#include <nlohmann/json.hpp>
#include <set>

#include "core/atomic_file.h"

namespace msa {

namespace {

using json = nlohmann::json;

constexpr uint64_t kMaxDim = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

// Parses JSON text without exceptions; rejects duplicate keys in any object (the format defines a map, and
// a duplicate would silently shadow a tensor). On failure returns false and sets *why.
bool parse_json_strict(const char* first, const char* last, json* out, std::string* why) {
  std::vector<std::set<std::string>> keys;
  std::string dup;
  auto cb = [&](int /*depth*/, json::parse_event_t ev, json& parsed) -> bool {
    switch (ev) {
      case json::parse_event_t::object_start: keys.emplace_back(); break;
      case json::parse_event_t::object_end:
        if (!keys.empty()) keys.pop_back();
        break;
      case json::parse_event_t::key:
        if (!keys.empty() && parsed.is_string() &&
            !keys.back().insert(parsed.get_ref<const std::string&>()).second && dup.empty()) {
          dup = parsed.get_ref<const std::string&>();
        }
        break;
      default: break;
    }
    return true;
  };
  try {
    *out = json::parse(first, last, cb, /*allow_exceptions=*/false);
  } catch (const std::exception& e) {  // allocation failure or an unexpected library error
    *why = std::string("not valid JSON (") + e.what() + ")";
    return false;
  }
  if (out->is_discarded()) {
    *why = "not valid JSON";
    return false;
  }
  if (!dup.empty()) {
    *why = "duplicate key '" + dup + "'";
    return false;
  }
  return true;
}

// Reads a non-negative JSON integer that fits in uint64.
bool get_u64(const json& j, uint64_t* v) {
  if (j.is_number_unsigned()) {
    *v = j.get<uint64_t>();
    return true;
  }
  if (j.is_number_integer()) {
    int64_t s = j.get<int64_t>();
    if (s < 0) return false;
    *v = static_cast<uint64_t>(s);
    return true;
  }
  return false;
}

bool is_aligned(const void* p, size_t a) { return a <= 1 || reinterpret_cast<uintptr_t>(p) % a == 0; }

// Where the views of zero-byte tensors point: aligned, never read.
alignas(64) const uint8_t kEmptyTensor[64] = {};

}  // namespace

bool parse_safetensors_dtype(const std::string& s, DType* out) {
  static const struct {
    const char* name;
    DType dtype;
  } kTypes[] = {{"BF16", DType::kBF16}, {"F16", DType::kF16}, {"F32", DType::kF32},
                {"I8", DType::kI8},     {"I32", DType::kI32}, {"I64", DType::kI64}};
  for (const auto& t : kTypes) {
    if (s == t.name) {
      *out = t.dtype;
      return true;
    }
  }
  return false;
}

// Owns the bytes the views point into: a mapping, or an aligned copy.
struct SafetensorsSet::Storage {
  MappedFile map;
  AlignedBuffer copy;
};

SafetensorsSet::SafetensorsSet() = default;
SafetensorsSet::~SafetensorsSet() = default;
SafetensorsSet::SafetensorsSet(SafetensorsSet&&) noexcept = default;
SafetensorsSet& SafetensorsSet::operator=(SafetensorsSet&&) noexcept = default;

uint64_t SafetensorsSet::total_bytes() const {
  uint64_t n = 0;
  for (const TensorInfo& t : tensors_) n += t.nbytes();
  return n;
}

const TensorInfo* SafetensorsSet::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

// Validates one safetensors image (`data`, `size`) and appends its tensors. The image must stay alive
// (it is owned by storage_); tensors whose data is not aligned to their element size are copied.
Status SafetensorsSet::add_image(const uint8_t* data, size_t size, const std::string& path,
                                 std::vector<TensorInfo>* tensors) {
  if (size < 8) {
    return Error(StatusCode::kTruncated, path, ": file is ", size,
                 " bytes, shorter than the 8-byte header length field — file truncated?");
  }
  uint8_t len_bytes[8];
  std::memcpy(len_bytes, data, 8);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  const uint64_t avail = static_cast<uint64_t>(size) - 8;
  if (header_len > avail) {
    return Error(StatusCode::kBadHeader, path, ": header length ", header_len,
                 " runs past the end of the file (", size, " bytes; at most ", avail,
                 " header bytes are available)");
  }
  const uint64_t data_size = avail - header_len;
  const uint8_t* data_start = data + 8 + header_len;

  json header;
  std::string why;
  const char* h0 = reinterpret_cast<const char*>(data + 8);
  if (!parse_json_strict(h0, h0 + header_len, &header, &why)) {
    return Error(StatusCode::kBadHeader, path, ": header (", header_len, " bytes) is ", why);
  }
  if (!header.is_object()) {
    return Error(StatusCode::kBadHeader, path, ": header is a JSON ", header.type_name(),
                 ", expected an object");
  }

  SafetensorsFileInfo info;
  info.path = path;
  info.file_size = size;
  info.header_size = header_len;
  const size_t file_index = files_.size();
  const size_t first_new = tensors->size();

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& e = it.value();
    if (name == "__metadata__") {
      if (!e.is_object()) {
        return Error(StatusCode::kBadHeader, path, ": __metadata__ is a JSON ", e.type_name(),
                     ", expected an object");
      }
      for (auto m = e.begin(); m != e.end(); ++m) {
        if (!m.value().is_string()) {
          return Error(StatusCode::kBadHeader, path, ": __metadata__['", m.key(), "'] is a JSON ",
                       m.value().type_name(), ", expected a string");
        }
        info.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = path + ": tensor '" + name + "'";
    if (name.empty()) return Error(StatusCode::kBadHeader, path, ": a tensor has an empty name");
    if (!e.is_object()) {
      return Error(StatusCode::kBadHeader, where, ": entry is a JSON ", e.type_name(),
                   ", expected an object");
    }
    auto dt = e.find("dtype");
    auto sh = e.find("shape");
    auto off = e.find("data_offsets");
    if (dt == e.end() || !dt->is_string()) {
      return Error(StatusCode::kBadHeader, where, ": missing or non-string \"dtype\"");
    }
    if (sh == e.end() || !sh->is_array()) {
      return Error(StatusCode::kBadHeader, where, ": missing or non-array \"shape\"");
    }
    if (off == e.end() || !off->is_array() || off->size() != 2) {
      return Error(StatusCode::kBadHeader, where, ": missing \"data_offsets\" or not an array of 2 integers");
    }
    TensorInfo t;
    t.name = name;
    t.dtype_name = dt->get<std::string>();
    t.file_index = file_index;
    t.file = path;
    if (!get_u64((*off)[0], &t.data_begin) || !get_u64((*off)[1], &t.data_end)) {
      return Error(StatusCode::kBadHeader, where, ": data_offsets ", off->dump(),
                   " are not non-negative integers");
    }
    uint64_t numel = 1;
    bool overflow = false;
    t.shape.reserve(sh->size());
    for (const json& d : *sh) {
      uint64_t v = 0;
      if (!get_u64(d, &v)) {
        return Error(StatusCode::kBadHeader, where, ": shape ", sh->dump(),
                     " has an entry that is not a non-negative integer");
      }
      if (v > kMaxDim) overflow = true;
      t.shape.push_back(static_cast<int64_t>(std::min(v, kMaxDim)));
      if (!overflow && __builtin_mul_overflow(numel, v, &numel)) overflow = true;
    }
    if (!parse_safetensors_dtype(t.dtype_name, &t.dtype)) {
      return Error(StatusCode::kDtype, where, ": unsupported dtype \"", t.dtype_name,
                   "\" (supported: BF16, F16, F32 for weights; I8, I32, I64 for other data)");
    }
    const uint64_t esize = dtype_size(t.dtype);
    uint64_t nbytes = 0;
    if (overflow || __builtin_mul_overflow(numel, esize, &nbytes) || numel > kMaxDim) {
      return Error(StatusCode::kShape, where, ": shape ", sh->dump(), " x ", t.dtype_name,
                   " overflows 64-bit byte counts");
    }
    if (t.data_begin > t.data_end) {
      return Error(StatusCode::kShape, where, ": data_offsets [", t.data_begin, ", ", t.data_end,
                   ") begin after end");
    }
    if (t.data_end - t.data_begin != nbytes) {
      return Error(StatusCode::kShape, where, ": shape ", shape_to_string(t.shape), " x ", t.dtype_name,
                   " needs ", nbytes, " bytes but data_offsets [", t.data_begin, ", ", t.data_end, ") span ",
                   t.data_end - t.data_begin);
    }
    if (t.data_end > data_size) {
      return Error(StatusCode::kTruncated, where, ": data_offsets [", t.data_begin, ", ", t.data_end,
                   ") end past the data section (", data_size, " bytes) — file truncated?");
    }
    t.view.dtype = t.dtype;
    t.view.shape = t.shape;
    t.view.data = nbytes ? data_start + t.data_begin : kEmptyTensor;
    tensors->push_back(std::move(t));
  }

  // Overlap: sort this file's non-empty tensors by begin; each must start at or after the furthest end so
  // far.
  std::vector<const TensorInfo*> order;
  for (size_t i = first_new; i < tensors->size(); ++i) {
    if ((*tensors)[i].nbytes() > 0) order.push_back(&(*tensors)[i]);
  }
  std::sort(order.begin(), order.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return a->data_begin != b->data_begin ? a->data_begin < b->data_begin : a->name < b->name;
  });
  const TensorInfo* furthest = nullptr;
  for (const TensorInfo* t : order) {
    if (furthest && t->data_begin < furthest->data_end) {
      return Error(StatusCode::kTensorOverlap, path, ": tensors '", furthest->name, "' [",
                   furthest->data_begin, ", ", furthest->data_end, ") and '", t->name, "' [", t->data_begin,
                   ", ", t->data_end, ") share bytes");
    }
    if (!furthest || t->data_end > furthest->data_end) furthest = t;
  }

  // Misaligned data (a header length that is not a multiple of 8, or packed mixed dtypes): copy into
  // aligned memory so that consumers may read it as typed arrays.
  for (size_t i = first_new; i < tensors->size(); ++i) {
    TensorInfo& t = (*tensors)[i];
    if (t.nbytes() == 0 || is_aligned(t.view.data, dtype_size(t.dtype))) continue;
    auto s = std::make_unique<Storage>();
    try {
      s->copy.resize(t.nbytes());
    } catch (const std::bad_alloc&) {
      return Error(StatusCode::kOutOfMemory, t.file, ": tensor '", t.name, "': cannot allocate ", t.nbytes(),
                   " bytes for an aligned copy");
    }
    std::memcpy(s->copy.data(), t.view.data, t.nbytes());
    t.view.data = s->copy.data();
    storage_.push_back(std::move(s));
  }
  files_.push_back(std::move(info));
  return Status::Ok();
}

Status SafetensorsSet::finish(std::vector<TensorInfo> tensors) {
  std::sort(tensors.begin(), tensors.end(),
            [](const TensorInfo& a, const TensorInfo& b) { return a.name < b.name; });
  for (size_t i = 1; i < tensors.size(); ++i) {
    if (tensors[i].name == tensors[i - 1].name) {
      return Error(StatusCode::kIo, source_, ": tensor '", tensors[i].name,
                   "' appears in two files: ", tensors[i - 1].file, " and ", tensors[i].file);
    }
  }
  tensors_ = std::move(tensors);
  by_name_.clear();
  by_name_.reserve(tensors_.size());
  for (size_t i = 0; i < tensors_.size(); ++i) by_name_.emplace(tensors_[i].name, i);
  return Status::Ok();
}

Status SafetensorsSet::open_file(const std::string& path, SafetensorsSet* out) {
  SafetensorsSet set;
  set.source_ = path;
  auto s = std::make_unique<Storage>();
  MSA_RETURN_IF_ERROR(MappedFile::open(path, &s->map));
  const uint8_t* data = s->map.data();
  const size_t size = s->map.size();
  set.storage_.push_back(std::move(s));
  std::vector<TensorInfo> tensors;
  MSA_RETURN_IF_ERROR(set.add_image(data, size, path, &tensors));
  MSA_RETURN_IF_ERROR(set.finish(std::move(tensors)));
  *out = std::move(set);
  return Status::Ok();
}

Status SafetensorsSet::from_buffer(const void* data, size_t size, const std::string& name,
                                   SafetensorsSet* out) {
  SafetensorsSet set;
  set.source_ = name;
  auto s = std::make_unique<Storage>();
  try {
    s->copy.resize(size);
  } catch (const std::bad_alloc&) {
    return Error(StatusCode::kOutOfMemory, name, ": cannot allocate ", size, " bytes");
  }
  if (size > 0) std::memcpy(s->copy.data(), data, size);
  const uint8_t* p = s->copy.data();
  set.storage_.push_back(std::move(s));
  std::vector<TensorInfo> tensors;
  MSA_RETURN_IF_ERROR(set.add_image(p, size, name, &tensors));
  MSA_RETURN_IF_ERROR(set.finish(std::move(tensors)));
  *out = std::move(set);
  return Status::Ok();
}

Status SafetensorsSet::open_index(const std::string& index_path, SafetensorsSet* out) {
  std::string text;
  MSA_RETURN_IF_ERROR(read_file(index_path, &text));
  json index;
  std::string why;
  if (!parse_json_strict(text.data(), text.data() + text.size(), &index, &why)) {
    return Error(StatusCode::kBadHeader, index_path, ": ", why);
  }
  if (!index.is_object()) {
    return Error(StatusCode::kBadHeader, index_path, ": is a JSON ", index.type_name(),
                 ", expected an object");
  }
  auto wm = index.find("weight_map");
  if (wm == index.end() || !wm->is_object()) {
    return Error(StatusCode::kBadHeader, index_path, ": missing \"weight_map\" object");
  }
  if (wm->empty()) return Error(StatusCode::kBadHeader, index_path, ": \"weight_map\" is empty");

  const size_t slash = index_path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? std::string() : index_path.substr(0, slash + 1);

  std::map<std::string, std::vector<std::string>> by_shard;  // shard file name -> tensor names listed
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    if (!it.value().is_string()) {
      return Error(StatusCode::kBadHeader, index_path, ": weight_map['", it.key(), "'] is a JSON ",
                   it.value().type_name(), ", expected a file name");
    }
    const std::string& shard = it.value().get_ref<const std::string&>();
    if (shard.empty() || shard == "." || shard == ".." || shard.find('/') != std::string::npos ||
        shard.find('\\') != std::string::npos || shard.find('\0') != std::string::npos) {
      return Error(StatusCode::kBadHeader, index_path, ": weight_map['", it.key(), "'] = \"", shard,
                   "\" is not a file name inside the checkpoint directory");
    }
    by_shard[shard].push_back(it.key());
  }

  SafetensorsSet set;
  set.source_ = index_path;
  std::vector<TensorInfo> tensors;
  for (const auto& [shard, names] : by_shard) {
    const std::string path = dir + shard;
    auto s = std::make_unique<Storage>();
    Status st = MappedFile::open(path, &s->map);
    if (!st.ok()) {
      return Error(StatusCode::kIo, index_path, ": shard '", shard,
                   "' listed in weight_map cannot be opened: ", st.message());
    }
    const uint8_t* data = s->map.data();
    const size_t size = s->map.size();
    set.storage_.push_back(std::move(s));
    const size_t first = tensors.size();
    MSA_RETURN_IF_ERROR(set.add_image(data, size, path, &tensors));
    std::set<std::string> present;
    for (size_t i = first; i < tensors.size(); ++i) present.insert(tensors[i].name);
    for (const std::string& n : names) {
      if (!present.count(n)) {
        return Error(StatusCode::kMissingTensor, index_path, ": tensor '", n,
                     "' is listed in weight_map under '", shard, "' but ", path, " does not contain it");
      }
    }
  }
  MSA_RETURN_IF_ERROR(set.finish(std::move(tensors)));
  *out = std::move(set);
  return Status::Ok();
}

Status SafetensorsSet::open_dir(const std::string& dir, SafetensorsSet* out) {
  std::string base = dir;
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  struct stat st;
  const std::string single = base + "/model.safetensors";
  const std::string index = base + "/model.safetensors.index.json";
  if (::stat(single.c_str(), &st) == 0) {
    MSA_RETURN_IF_ERROR(open_file(single, out));
  } else if (::stat(index.c_str(), &st) == 0) {
    MSA_RETURN_IF_ERROR(open_index(index, out));
  } else {
    return Error(StatusCode::kIo, dir,
                 ": no model.safetensors or model.safetensors.index.json in the directory");
  }
  out->source_ = dir;
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------- writing

namespace {

Status build_header(const std::vector<TensorToWrite>& tensors,
                    const std::map<std::string, std::string>& metadata, std::string* header,
                    std::vector<uint64_t>* sizes) {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    h["__metadata__"] = std::move(m);
  }
  std::set<std::string> names;
  uint64_t offset = 0;
  sizes->clear();
  for (const TensorToWrite& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__") {
      return Error(StatusCode::kInvalidArgument, "write_safetensors: invalid tensor name '", t.name, "'");
    }
    if (!names.insert(t.name).second) {
      return Error(StatusCode::kInvalidArgument, "write_safetensors: duplicate tensor name '", t.name, "'");
    }
    uint64_t numel = 1;
    nlohmann::ordered_json shape = nlohmann::ordered_json::array();
    for (int64_t d : t.shape) {
      if (d < 0) {
        return Error(StatusCode::kInvalidArgument, "write_safetensors: tensor '", t.name,
                     "' has negative dimension ", d);
      }
      if (__builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel)) {
        return Error(StatusCode::kInvalidArgument, "write_safetensors: tensor '", t.name, "' size overflows");
      }
      shape.push_back(d);
    }
    uint64_t nbytes = 0;
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(dtype_size(t.dtype)), &nbytes) ||
        __builtin_add_overflow(offset, nbytes, &offset) || numel > kMaxDim) {
      return Error(StatusCode::kInvalidArgument, "write_safetensors: tensor '", t.name, "' size overflows");
    }
    if (nbytes > 0 && t.data == nullptr) {
      return Error(StatusCode::kInvalidArgument, "write_safetensors: tensor '", t.name, "' has no data");
    }
    sizes->push_back(nbytes);
    nlohmann::ordered_json e = nlohmann::ordered_json::object();
    e["dtype"] = dtype_name(t.dtype);
    e["shape"] = std::move(shape);
    e["data_offsets"] = nlohmann::ordered_json::array({offset - nbytes, offset});
    h[t.name] = std::move(e);
  }
  try {
    *header = h.dump();
  } catch (const std::exception& e) {
    return Error(StatusCode::kInvalidArgument, "write_safetensors: cannot encode the header: ", e.what());
  }
  header->append((8 - header->size() % 8) % 8, ' ');
  return Status::Ok();
}

void put_le64(uint64_t v, char* out) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xffu);
}

}  // namespace

Status serialize_safetensors(const std::vector<TensorToWrite>& tensors,
                             const std::map<std::string, std::string>& metadata, std::string* out) {
  std::string header;
  std::vector<uint64_t> sizes;
  MSA_RETURN_IF_ERROR(build_header(tensors, metadata, &header, &sizes));
  char len[8];
  put_le64(header.size(), len);
  std::string bytes(len, 8);
  bytes += header;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (sizes[i]) bytes.append(static_cast<const char*>(tensors[i].data), static_cast<size_t>(sizes[i]));
  }
  *out = std::move(bytes);
  return Status::Ok();
}

Status write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                         const std::map<std::string, std::string>& metadata) {
  std::string header;
  std::vector<uint64_t> sizes;
  MSA_RETURN_IF_ERROR(build_header(tensors, metadata, &header, &sizes));
  char len[8];
  put_le64(header.size(), len);
  std::vector<ByteSpan> pieces{{len, 8}, {header.data(), header.size()}};
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (sizes[i]) pieces.push_back({tensors[i].data, static_cast<size_t>(sizes[i])});
  }
  return atomic_write_file(path, pieces);  // core/atomic_file.h: temp, fsync, rename, fsync(dir)
}

Status write_file_atomic(const std::string& path, const std::string& bytes) {
  return atomic_write_file(path, {{bytes.data(), bytes.size()}});
}

}  // namespace msa
