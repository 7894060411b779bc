// Safetensors reading (single file, sharded checkpoint with model.safetensors.index.json, or a memory
// buffer) with strict validation, and writing (atomic: <path>.tmp, fsync, rename).
//
// File format: 8-byte little-endian header length N, N bytes of JSON header (an object: tensor name ->
// {"dtype", "shape", "data_offsets": [begin, end)} plus an optional "__metadata__" string->string map),
// then the data section; offsets are relative to the start of the data section.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/buffer.h"
#include "core/dtype.h"
#include "core/file_map.h"
#include "core/status.h"
#include "core/tensor.h"

namespace msa {

struct TensorInfo {
  std::string name;
  std::string dtype_name;  // as written in the header ("BF16", "F32", ...)
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;  // same as view.shape
  TensorView view;             // points into the mapped file (or an aligned copy, see SafetensorsSet)
  uint64_t data_begin = 0;     // offsets within the data section, as written
  uint64_t data_end = 0;
  size_t file_index = 0;  // index into SafetensorsSet::files()
  std::string file;       // path of the file holding the tensor

  size_t nbytes() const { return static_cast<size_t>(data_end - data_begin); }
};

struct SafetensorsFileInfo {
  std::string path;
  uint64_t file_size = 0;
  uint64_t header_size = 0;                     // N (the JSON header's length, padding included)
  std::map<std::string, std::string> metadata;  // "__metadata__" (empty when absent)
};

class SafetensorsSet {
 public:
  SafetensorsSet();
  ~SafetensorsSet();
  SafetensorsSet(SafetensorsSet&&) noexcept;
  SafetensorsSet& operator=(SafetensorsSet&&) noexcept;
  SafetensorsSet(const SafetensorsSet&) = delete;
  SafetensorsSet& operator=(const SafetensorsSet&) = delete;

  // One .safetensors file, memory-mapped. Errors (the message names the file and, where relevant, the
  // tensor): kIo (cannot open/map), kTruncated (shorter than 8 bytes, or a tensor ends past the data
  // section), kBadHeader (header length past EOF, header not a JSON object, malformed entry, duplicate key),
  // kDtype (element type other than BF16/F16/F32/I8/I32/I64), kShape (begin > end, or the byte span does
  // not match shape x element size), kTensorOverlap (two tensors share bytes).
  static Status open_file(const std::string& path, SafetensorsSet* out);

  // A sharded checkpoint: `index_path` is a model.safetensors.index.json whose "weight_map" maps tensor
  // names to shard file names in the same directory. Errors: those of open_file for each shard, plus
  // kBadHeader (index malformed, a shard name that leaves the directory), kIo (a listed shard is missing, the
  // same tensor name in two shards), kMissingTensor (a tensor listed in weight_map is not in its shard).
  static Status open_index(const std::string& index_path, SafetensorsSet* out);

  // <dir>/model.safetensors when present, else <dir>/model.safetensors.index.json. Errors: kIo when
  // neither exists, else those of open_file / open_index.
  static Status open_dir(const std::string& dir, SafetensorsSet* out);

  // Parses a safetensors image held in memory (copied: the caller's buffer may be freed afterwards).
  // `name` stands for the path in messages. Same validation and errors as open_file.
  static Status from_buffer(const void* data, size_t size, const std::string& name, SafetensorsSet* out);

  // nullptr when absent.
  const TensorInfo* find(const std::string& name) const;
  bool contains(const std::string& name) const { return find(name) != nullptr; }

  // Every tensor, sorted by name.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  size_t size() const { return tensors_.size(); }
  std::vector<TensorInfo>::const_iterator begin() const { return tensors_.begin(); }
  std::vector<TensorInfo>::const_iterator end() const { return tensors_.end(); }

  // One entry per file, in the order opened (for an index: sorted by shard name).
  const std::vector<SafetensorsFileInfo>& files() const { return files_; }

  // What was opened (a file, an index, a directory or a buffer name) — for messages.
  const std::string& source() const { return source_; }

  // Sum of all tensors' byte sizes.
  uint64_t total_bytes() const;

 private:
  struct Storage;
  Status add_image(const uint8_t* data, size_t size, const std::string& path,
                   std::vector<TensorInfo>* tensors);
  Status finish(std::vector<TensorInfo> tensors);

  std::string source_;
  std::vector<SafetensorsFileInfo> files_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> by_name_;
  std::vector<std::unique_ptr<Storage>> storage_;  // mappings and aligned copies the views point into
};

struct TensorToWrite {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;  // shape-product x dtype_size(dtype) bytes (may be null when that is 0)
};

// Serialises tensors into the standard format: 8-byte little-endian header length, JSON header padded
// with spaces to a multiple of 8, data contiguous in the given order. `metadata` becomes "__metadata__"
// (omitted when empty). Errors: kInvalidArgument (empty/duplicate/reserved name, negative dimension, size
// overflow, null data, name not valid UTF-8).
Status serialize_safetensors(const std::vector<TensorToWrite>& tensors,
                             const std::map<std::string, std::string>& metadata, std::string* out);

// Writes the same bytes to `path` atomically (to path + ".tmp", fsync, rename, fsync of the directory).
// Errors: those of serialize_safetensors, kIo.
Status write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                         const std::map<std::string, std::string>& metadata);

// Writes arbitrary bytes to `path` atomically, as write_safetensors does (also used for JSON files).
// Errors: kIo.
Status write_file_atomic(const std::string& path, const std::string& bytes);

// Parses a safetensors dtype string ("BF16", "F16", "F32", "I8", "I32", "I64"). False for anything else.
bool parse_safetensors_dtype(const std::string& s, DType* out);

}  // namespace msa
