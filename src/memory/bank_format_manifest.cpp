// The bank directory and its MANIFEST (bank_format.h, docs/FORMAT.md): the fingerprint fields, writing and
// parsing the manifest, creating the directory, deleting files no manifest references.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <unordered_set>

#include "memory/bank_format_internal.h"

namespace msa::bankfmt {

using namespace detail;

namespace {

bool valid_segment_name(const char* name, size_t cap) {
  size_t n = 0;
  while (n < cap && name[n] != '\0') ++n;
  if (n == 0 || n == cap) return false;
  for (size_t i = 0; i < n; ++i) {
    const char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.')) return false;
  }
  if (name[0] == '.') return false;
  for (size_t i = n; i < cap; ++i) {
    if (name[i] != '\0') return false;
  }
  return true;
}

}  // namespace

// ---------------------------------------------------------------------------------------------- fingerprint

std::vector<std::pair<std::string, std::string>> fingerprint_fields(const Fingerprint& f) {
  auto hex = [](uint64_t v) {
    char b[24];
    std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(v));
    return std::string(b);
  };
  auto dbl = [](double v) {
    char b[40];
    std::snprintf(b, sizeof b, "%.17g", v);
    return std::string(b);
  };
  std::string aux(f.aux_loss_method, strnlen(f.aux_loss_method, sizeof f.aux_loss_method));
  return {
      {"hidden_size", std::to_string(f.hidden_size)},
      {"num_hidden_layers", std::to_string(f.num_hidden_layers)},
      {"num_attention_heads", std::to_string(f.num_attention_heads)},
      {"num_key_value_heads", std::to_string(f.num_key_value_heads)},
      {"head_dim", std::to_string(f.head_dim)},
      {"vocab_size", std::to_string(f.vocab_size)},
      {"pooling_kernel_size", std::to_string(f.pooling_kernel_size)},
      {"decouple_router", std::to_string(f.decouple_router)},
      {"n_router_layers", std::to_string(f.n_router_layers)},
      {"router_layers_xxh64", hex(f.router_layers_xxh64)},
      {"rope_theta", dbl(f.rope_theta)},
      {"rms_norm_eps", dbl(f.rms_norm_eps)},
      {"aux_loss_method", aux},
      {"tokenizer_xxh64", hex(f.tokenizer_xxh64)},
      {"weights_digest", hex(f.weights_digest)},
  };
}

Status compare_fingerprint(const Fingerprint& bank, const Fingerprint& model, const std::string& what) {
  const auto b = fingerprint_fields(bank);
  const auto m = fingerprint_fields(model);
  for (size_t i = 0; i < b.size(); ++i) {
    if (b[i].second != m[i].second) {
      return Error(StatusCode::kInvalidArgument, what, ": the bank was built for another model: ", b[i].first, " is ",
                   b[i].second, " in the bank and ", m[i].second, " in the model");
    }
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------- writing

Status make_dirs(const std::string& dir) {
  if (dir.empty()) return Error(StatusCode::kInvalidArgument, "empty bank path");
  std::string cur;
  size_t i = 0;
  while (i <= dir.size()) {
    const size_t j = dir.find('/', i);
    cur = dir.substr(0, j == std::string::npos ? dir.size() : j);
    if (!cur.empty() && ::mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST) {
      return Error(StatusCode::kIo, cur, ": cannot create directory: ", errno_text());
    }
    if (j == std::string::npos) break;
    i = j + 1;
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Error(StatusCode::kIo, dir, ": not a directory");
  }
  return Status::Ok();
}

Status write_manifest(const std::string& dir, const Manifest& m) {
  const std::string path = dir + "/" + kManifestName;
  FileWriter fw;
  MSA_RETURN_IF_ERROR(fw.open(path));
  SectionedWriter w(&fw, 4);
  MSA_RETURN_IF_ERROR(w.begin());
  MSA_RETURN_IF_ERROR(w.section(kFingerprint, 0, &m.fp, sizeof m.fp));
  MSA_RETURN_IF_ERROR(w.section(kTemplate, 0, m.template_kv.data(), m.template_kv.size() * sizeof(float)));
  std::vector<SegmentRec> segs(m.segments.size());
  for (size_t i = 0; i < segs.size(); ++i) {
    std::memset(&segs[i], 0, sizeof segs[i]);
    const SegmentRef& s = m.segments[i];
    if (s.name.empty() || s.name.size() >= sizeof segs[i].name) {
      return Error(StatusCode::kInternal, path, ": segment name '", s.name, "' does not fit");
    }
    std::memcpy(segs[i].name, s.name.data(), s.name.size());
    segs[i].file_size = s.file_size;
    segs[i].header_xxh64 = s.header_xxh64;
    segs[i].n_docs = s.n_docs;
    segs[i].n_chunks = s.n_chunks;
  }
  MSA_RETURN_IF_ERROR(w.section(kSegments, 0, segs.data(), segs.size() * sizeof(SegmentRec)));
  MSA_RETURN_IF_ERROR(w.section(kTombstones, 0, m.tombstones.data(), m.tombstones.size() * sizeof(uint64_t)));
  uint64_t checksum = 0, size = 0;
  return w.finish(kManifestMagic, m.generation, &checksum, &size);
}

void remove_unreferenced(const std::string& dir, const Manifest& keep, const std::unordered_set<std::string>& in_use) {
  std::unordered_set<std::string> names;
  for (const SegmentRef& s : keep.segments) names.insert(s.name);
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return;
  std::vector<std::string> doomed;
  while (dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    const bool ours_seg = n.size() > 11 && n.compare(0, 4, "seg-") == 0 && n.compare(n.size() - 7, 7, ".msaseg") == 0;
    const bool tmp = n.size() > 4 && n.compare(n.size() - 4, 4, ".tmp") == 0 &&
                     (n.compare(0, 4, "seg-") == 0 || n.compare(0, 8, "MANIFEST") == 0);
    if ((ours_seg && names.count(n) == 0 && in_use.count(n) == 0) || tmp) doomed.push_back(n);
  }
  ::closedir(d);
  for (const std::string& n : doomed) ::unlink((dir + "/" + n).c_str());
}

// ---------------------------------------------------------------------------------------------- reading

Status parse_manifest(const uint8_t* data, size_t size, const std::string& path, Manifest* out) {
  ParsedFile f;
  MSA_RETURN_IF_ERROR(parse_file(data, size, path, kManifestMagic, &f));
  if (f.table.size() != 4) return Error(StatusCode::kCorrupt, path, ": ", f.table.size(), " sections, expected 4");
  MSA_RETURN_IF_ERROR(expect_section(f, 0, kFingerprint, 0, path));
  MSA_RETURN_IF_ERROR(expect_section(f, 1, kTemplate, 0, path));
  MSA_RETURN_IF_ERROR(expect_section(f, 2, kSegments, 0, path));
  MSA_RETURN_IF_ERROR(expect_section(f, 3, kTombstones, 0, path));
  for (const SectionEntry& e : f.table) MSA_RETURN_IF_ERROR(check_section(data, e, path));
  Manifest m;
  m.generation = f.h.id;
  const SectionEntry& fe = f.table[0];
  if (fe.length != sizeof(Fingerprint)) return Error(StatusCode::kCorrupt, path, ": fingerprint: wrong length");
  std::memcpy(&m.fp, data + fe.offset, sizeof m.fp);
  const Fingerprint& fp = m.fp;
  if (!page_dtype_valid(static_cast<uint32_t>(fp.page_dtype)) || fp.page_dtype > 2 || fp.template_len != 3 ||
      !all_zero(fp.reserved, sizeof fp.reserved) || fp.num_hidden_layers < 1 || fp.num_hidden_layers > 4096 ||
      fp.num_key_value_heads < 1 || fp.num_key_value_heads > 4096 || fp.head_dim < 1 || fp.head_dim > 65536 ||
      fp.pooling_kernel_size < 1 || fp.n_router_layers < 1 || fp.n_router_layers > fp.num_hidden_layers ||
      strnlen(fp.aux_loss_method, sizeof fp.aux_loss_method) == sizeof fp.aux_loss_method) {
    return Error(StatusCode::kCorrupt, path, ": fingerprint: impossible values");
  }
  const uint64_t width = fp.num_key_value_heads * fp.head_dim;
  const uint64_t tfloats = fp.num_hidden_layers * 2 * fp.template_len * width;
  const SectionEntry& te = f.table[1];
  if (te.length != tfloats * sizeof(float)) {
    return Error(StatusCode::kCorrupt, path, ": template-prefix KV: ", te.length, " bytes, expected ",
                 tfloats * sizeof(float));
  }
  m.template_kv.resize(tfloats);
  if (te.length > 0) std::memcpy(m.template_kv.data(), data + te.offset, te.length);
  const SectionEntry& se = f.table[2];
  if (se.length % sizeof(SegmentRec) != 0) return Error(StatusCode::kCorrupt, path, ": segment list: bad length");
  std::unordered_set<std::string> seen;
  for (uint64_t off = 0; off < se.length; off += sizeof(SegmentRec)) {
    SegmentRec r;
    std::memcpy(&r, data + se.offset + off, sizeof r);
    if (!valid_segment_name(r.name, sizeof r.name)) {
      return Error(StatusCode::kCorrupt, path, ": segment list: entry ", off / sizeof r, " has a bad file name");
    }
    SegmentRef s;
    s.name = r.name;
    if (!seen.insert(s.name).second) {
      return Error(StatusCode::kCorrupt, path, ": segment list: ", s.name, " appears twice");
    }
    s.file_size = r.file_size;
    s.header_xxh64 = r.header_xxh64;
    s.n_docs = r.n_docs;
    s.n_chunks = r.n_chunks;
    m.segments.push_back(std::move(s));
  }
  const SectionEntry& tb = f.table[3];
  if (tb.length % sizeof(uint64_t) != 0) return Error(StatusCode::kCorrupt, path, ": tombstones: bad length");
  m.tombstones.resize(tb.length / sizeof(uint64_t));
  if (tb.length > 0) std::memcpy(m.tombstones.data(), data + tb.offset, tb.length);
  for (size_t i = 1; i < m.tombstones.size(); ++i) {
    if (m.tombstones[i] <= m.tombstones[i - 1]) {
      return Error(StatusCode::kCorrupt, path, ": tombstones: ids not strictly ascending");
    }
  }
  *out = std::move(m);
  return Status::Ok();
}

Status read_manifest(const std::string& dir, Manifest* out) {
  const std::string path = dir + "/" + kManifestName;
  MappedFile map;
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Error(StatusCode::kIo, dir, ": not a memory bank directory (", errno != 0 ? errno_text() : "not a directory",
                 ")");
  }
  MSA_RETURN_IF_ERROR(MappedFile::open(path, &map));
  return parse_manifest(map.data(), map.size(), path, out);
}

void discard_uncommitted_segment(const std::string& dir, const std::string& name) {
  Manifest m;
  if (read_manifest(dir, &m).ok()) {
    for (const SegmentRef& r : m.segments) {
      if (r.name == name) return;
    }
  }
  ::unlink((dir + "/" + name).c_str());
}

}  // namespace msa::bankfmt
