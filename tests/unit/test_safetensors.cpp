// SafetensorsSet (reading, strict validation, sharded index) and write_safetensors. Fixtures are written by
// the library's own writer into a temporary directory under the working directory, then corrupted.
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "model/safetensors.h"

using namespace msa;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& tag) {
    static std::atomic<int> counter{0};
    path = fs::current_path() /
           ("msa_tmp_st_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[static_cast<size_t>(i)] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// A raw safetensors image from header text and a data section (no padding added).
std::string raw_image(const std::string& header, const std::string& data) {
  return le64(header.size()) + header + data;
}

std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = f32_to_bf16(v[i]);
  return out;
}

// Temporary files (any "*.tmp", whatever the atomic writer names them) left in the directory of `path`.
int tmp_files_beside(const std::string& path) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(fs::path(path).parent_path())) {
    const std::string name = e.path().filename().string();
    if (name.size() >= 4 && name.compare(name.size() - 4, 4, ".tmp") == 0) ++n;
  }
  return n;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Two small tensors written with the library's writer; returns the path.
std::string write_two(const TempDir& dir, const std::string& name = "model.safetensors") {
  static const std::vector<float> a = random_floats(6, 1);
  static const std::vector<uint16_t> b = to_bf16(random_floats(8, 2));
  std::string path = dir.file(name);
  Status st = write_safetensors(path,
                                {{"model.layers.0.self_attn.q_proj.weight", DType::kF32, {2, 3}, a.data()},
                                 {"model.norm.weight", DType::kBF16, {8}, b.data()}},
                                {});
  REQUIRE(st.ok());
  return path;
}

}  // namespace

TEST_CASE("safetensors: writer/reader round trip of every dtype with metadata", "[safetensors]") {
  TempDir dir("roundtrip");
  const std::vector<float> f32 = random_floats(12, 3);
  const std::vector<uint16_t> bf16 = to_bf16(random_floats(5, 4));
  std::vector<uint16_t> f16(7);
  for (size_t i = 0; i < f16.size(); ++i) f16[i] = f32_to_f16(static_cast<float>(i) * 0.25f);
  const std::vector<int32_t> i32 = {1, -2, 3, 151645};
  const std::vector<int64_t> i64 = {-5, 1ll << 40};
  const std::vector<int8_t> i8 = {-128, 0, 127};
  const float scalar = 0.1f;
  const std::string path = dir.file("model.safetensors");
  // bf16 of odd length first: the F32 tensor after it lands on a 2-byte boundary and must be realigned.
  std::vector<TensorToWrite> tensors = {
      {"b.bf16", DType::kBF16, {5}, bf16.data()}, {"a.f32", DType::kF32, {3, 4}, f32.data()},
      {"c.f16", DType::kF16, {7, 1}, f16.data()}, {"d.i32", DType::kI32, {4}, i32.data()},
      {"e.i64", DType::kI64, {2}, i64.data()},    {"f.i8", DType::kI8, {3}, i8.data()},
      {"temperature", DType::kF32, {}, &scalar},  {"g.empty", DType::kF32, {0, 4}, nullptr},
  };
  REQUIRE(write_safetensors(path, tensors, {{"format", "pt"}, {"producer", "libmsa test"}}).ok());
  REQUIRE(tmp_files_beside(path) == 0);

  // Standard layout: little-endian length, header padded to a multiple of 8 with spaces, data in the given
  // order.
  const std::string bytes = read_bytes(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[static_cast<size_t>(i)]);
  REQUIRE(n % 8 == 0);
  REQUIRE(bytes.size() == 8 + n + 10 + 48 + 14 + 16 + 16 + 3 + 4);
  REQUIRE(bytes[8] == '{');
  REQUIRE(std::memcmp(bytes.data() + 8 + n, bf16.data(), 10) == 0);  // first tensor first

  SafetensorsSet set;
  Status st = SafetensorsSet::open_file(path, &set);
  REQUIRE(st.ok());
  REQUIRE(set.size() == tensors.size());
  REQUIRE(set.files().size() == 1);
  REQUIRE(set.files()[0].metadata.at("format") == "pt");
  REQUIRE(set.files()[0].metadata.at("producer") == "libmsa test");
  REQUIRE(set.files()[0].header_size == n);
  for (size_t i = 1; i < set.tensors().size(); ++i)
    REQUIRE(set.tensors()[i - 1].name < set.tensors()[i].name);

  for (const TensorToWrite& w : tensors) {
    const TensorInfo* t = set.find(w.name);
    REQUIRE(t != nullptr);
    CHECK(t->dtype == w.dtype);
    CHECK(t->dtype_name == dtype_name(w.dtype));
    CHECK(t->shape == w.shape);
    CHECK(t->view.shape == w.shape);
    CHECK(t->file == path);
    CHECK(t->nbytes() == t->view.nbytes());
    CHECK(reinterpret_cast<uintptr_t>(t->view.data) % dtype_size(t->dtype) == 0);
    if (t->nbytes()) CHECK(std::memcmp(t->view.data, w.data, t->nbytes()) == 0);
  }
  const TensorInfo* a = set.find("a.f32");
  REQUIRE(a->data_begin == 10);  // odd offset for a 4-byte type: the view is an aligned copy
  REQUIRE(a->view.as<float>()[11] == f32[11]);
  REQUIRE(set.find("temperature")->view.numel() == 1);
  REQUIRE(set.find("g.empty")->nbytes() == 0);
  REQUIRE(set.find("nope") == nullptr);
  REQUIRE(set.total_bytes() == 10 + 48 + 14 + 16 + 16 + 3 + 4);

  // Parsing the same image from memory gives the same tensors.
  SafetensorsSet mem;
  REQUIRE(SafetensorsSet::from_buffer(bytes.data(), bytes.size(), "mem", &mem).ok());
  REQUIRE(mem.size() == set.size());
  REQUIRE(std::memcmp(mem.find("e.i64")->view.data, i64.data(), 16) == 0);

  // The set is movable and its views stay valid.
  SafetensorsSet moved = std::move(set);
  REQUIRE(moved.find("d.i32")->view.as<int32_t>()[3] == 151645);

  // serialize_safetensors produces exactly the bytes written.
  std::string ser;
  REQUIRE(serialize_safetensors(tensors, {{"format", "pt"}, {"producer", "libmsa test"}}, &ser).ok());
  REQUIRE(ser == bytes);
}

TEST_CASE("safetensors: truncated file is kTruncated naming the file and tensor", "[safetensors]") {
  TempDir dir("trunc");
  const std::string good = read_bytes(write_two(dir));
  const std::string path = dir.file("cut.safetensors");
  write_bytes(path, good.substr(0, good.size() - 3));
  SafetensorsSet set;
  Status st = SafetensorsSet::open_file(path, &set);
  REQUIRE(st.code() == StatusCode::kTruncated);
  CHECK(contains(st.message(), path));
  CHECK(contains(st.message(), "model.norm.weight"));
  CHECK(contains(st.message(), "truncated"));
  REQUIRE(set.size() == 0);  // *out untouched on failure

  // Shorter than the 8-byte length field, including an empty file.
  for (size_t len : {0, 1, 7}) {
    write_bytes(path, good.substr(0, len));
    st = SafetensorsSet::open_file(path, &set);
    REQUIRE(st.code() == StatusCode::kTruncated);
    CHECK(contains(st.message(), path));
  }
}

TEST_CASE("safetensors: header length past EOF is kBadHeader", "[safetensors]") {
  TempDir dir("hdrlen");
  std::string bytes = read_bytes(write_two(dir));
  const std::string path = dir.file("bad.safetensors");
  for (uint64_t n :
       {static_cast<uint64_t>(bytes.size() - 7), static_cast<uint64_t>(1) << 40, ~static_cast<uint64_t>(0)}) {
    std::string b = bytes;
    b.replace(0, 8, le64(n));
    write_bytes(path, b);
    SafetensorsSet set;
    Status st = SafetensorsSet::open_file(path, &set);
    REQUIRE(st.code() == StatusCode::kBadHeader);
    CHECK(contains(st.message(), path));
    CHECK(contains(st.message(), "past the end"));
  }
}

TEST_CASE("safetensors: malformed headers are kBadHeader", "[safetensors]") {
  TempDir dir("badjson");
  const std::string path = dir.file("x.safetensors");
  const std::string data(8, '\0');
  const std::vector<std::string> headers = {
      "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]",      // unterminated JSON
      "[1, 2, 3]",                                                                  // not an object
      "{\"a\": 5}",                                                                 // entry not an object
      "{\"a\": {\"shape\": [2], \"data_offsets\": [0, 8]}}",                        // no dtype
      "{\"a\": {\"dtype\": \"F32\", \"data_offsets\": [0, 8]}}",                    // no shape
      "{\"a\": {\"dtype\": \"F32\", \"shape\": [2]}}",                              // no data_offsets
      "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0]}}",       // 1 offset
      "{\"a\": {\"dtype\": \"F32\", \"shape\": [-2], \"data_offsets\": [0, 8]}}",   // negative dim
      "{\"a\": {\"dtype\": \"F32\", \"shape\": [2.5], \"data_offsets\": [0, 8]}}",  // float dim
      "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [-1, 8]}}",   // negative offset
      "{\"a\": {\"dtype\": 7, \"shape\": [2], \"data_offsets\": [0, 8]}}",          // dtype not a string
      "{\"__metadata__\": {\"k\": 1}}",  // metadata value not a string
      "{\"__metadata__\": [\"k\"]}",     // metadata not an object
      "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
      " \"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}",  // duplicate tensor name
      "{\"\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}",   // empty name
      std::string(
          "{\"a\xff\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}"),  // bad UTF-8
  };
  for (const std::string& h : headers) {
    INFO(h);
    write_bytes(path, raw_image(h, data));
    SafetensorsSet set;
    Status st = SafetensorsSet::open_file(path, &set);
    CHECK(st.code() == StatusCode::kBadHeader);
    CHECK(contains(st.message(), path));
  }
  // Sanity: the same entry, well-formed, opens.
  write_bytes(path,
              raw_image("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", data));
  SafetensorsSet set;
  REQUIRE(SafetensorsSet::open_file(path, &set).ok());
}

TEST_CASE("safetensors: overlapping tensors are kTensorOverlap", "[safetensors]") {
  TempDir dir("overlap");
  const std::string path = dir.file("overlap.safetensors");
  const std::string data(32, '\x01');
  write_bytes(path,
              raw_image("{\"x.weight\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]},"
                        " \"y.weight\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [12, 28]}}",
                        data));
  SafetensorsSet set;
  Status st = SafetensorsSet::open_file(path, &set);
  REQUIRE(st.code() == StatusCode::kTensorOverlap);
  CHECK(contains(st.message(), path));
  CHECK(contains(st.message(), "x.weight"));
  CHECK(contains(st.message(), "y.weight"));

  // Containment (a small tensor inside a large one, listed in either order) is an overlap too.
  write_bytes(path, raw_image("{\"big\": {\"dtype\": \"F32\", \"shape\": [8], \"data_offsets\": [0, 32]},"
                              " \"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]},"
                              " \"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [20, 24]}}",
                              data));
  REQUIRE(SafetensorsSet::open_file(path, &set).code() == StatusCode::kTensorOverlap);

  // Adjacent tensors, gaps and empty tensors do not overlap.
  write_bytes(path, raw_image("{\"x\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]},"
                              " \"e\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [8, 8]},"
                              " \"y\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [20, 32]}}",
                              data));
  REQUIRE(SafetensorsSet::open_file(path, &set).ok());
  REQUIRE(set.size() == 3);
}

TEST_CASE("safetensors: unsupported dtype is kDtype naming file, tensor and dtype", "[safetensors]") {
  TempDir dir("dtype");
  const std::string path = dir.file("f64.safetensors");
  for (const char* dt : {"F64", "I16", "F8_E4M3", "bf16", "complex"}) {
    write_bytes(path, raw_image(std::string("{\"model.norm.weight\": {\"dtype\": \"") + dt +
                                    "\", \"shape\": [2], \"data_offsets\": [0, 16]}}",
                                std::string(16, '\0')));
    SafetensorsSet set;
    Status st = SafetensorsSet::open_file(path, &set);
    INFO(st.to_string());
    REQUIRE(st.code() == StatusCode::kDtype);
    CHECK(contains(st.message(), path));
    CHECK(contains(st.message(), "model.norm.weight"));
    CHECK(contains(st.message(), dt));
  }
}

TEST_CASE("safetensors: byte span that disagrees with the shape is kShape", "[safetensors]") {
  TempDir dir("shape");
  const std::string path = dir.file("shape.safetensors");
  const std::string data(64, '\0');
  const std::
      vector<std::string>
          headers =
              {
                  "{\"w\": {\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 16]}}",  // needs 24
                                                                                                  // bytes
                  "{\"w\": {\"dtype\": \"BF16\", \"shape\": [4], \"data_offsets\": [16, 8]}}",  // begin > end
                  "{\"w\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296], \"data_offsets\": [0, "
                  "16]}}",  // overflow
                  "{\"w\": {\"dtype\": \"I64\", \"shape\": [1152921504606846976, 2], \"data_offsets\": [0, "
                  "16]}}",  // bytes overflow
              };
  for (const std::string& h : headers) {
    INFO(h);
    write_bytes(path, raw_image(h, data));
    SafetensorsSet set;
    Status st = SafetensorsSet::open_file(path, &set);
    CHECK(st.code() == StatusCode::kShape);
    CHECK(contains(st.message(), path));
    CHECK(contains(st.message(), "'w'"));
  }
}

TEST_CASE("safetensors: sharded checkpoint round trip through the index", "[safetensors]") {
  TempDir dir("shards");
  const std::vector<float> a = random_floats(6, 10);
  const std::vector<float> b = random_floats(4, 11);
  const std::vector<uint16_t> c = to_bf16(random_floats(3, 12));
  REQUIRE(write_safetensors(dir.file("model-00001-of-00002.safetensors"),
                            {{"model.embed_tokens.weight", DType::kF32, {3, 2}, a.data()},
                             {"model.norm.weight", DType::kF32, {4}, b.data()}},
                            {{"format", "pt"}})
              .ok());
  REQUIRE(write_safetensors(dir.file("model-00002-of-00002.safetensors"),
                            {{"lm_head.weight", DType::kBF16, {3}, c.data()}},
                            {{"format", "pt"}, {"shard", "2"}})
              .ok());
  const std::string index =
      "{\"metadata\": {\"total_size\": 46}, \"weight_map\": {"
      "\"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\","
      "\"model.norm.weight\": \"model-00001-of-00002.safetensors\","
      "\"lm_head.weight\": \"model-00002-of-00002.safetensors\"}}";
  REQUIRE(write_file_atomic(dir.file("model.safetensors.index.json"), index).ok());

  SafetensorsSet set;
  Status st = SafetensorsSet::open_index(dir.file("model.safetensors.index.json"), &set);
  REQUIRE(st.ok());
  REQUIRE(set.size() == 3);
  REQUIRE(set.files().size() == 2);
  REQUIRE(set.files()[1].metadata.at("shard") == "2");
  const TensorInfo* e = set.find("model.embed_tokens.weight");
  const TensorInfo* l = set.find("lm_head.weight");
  REQUIRE(e);
  REQUIRE(l);
  CHECK(e->file == dir.file("model-00001-of-00002.safetensors"));
  CHECK(l->file == dir.file("model-00002-of-00002.safetensors"));
  CHECK(std::memcmp(e->view.data, a.data(), 24) == 0);
  CHECK(std::memcmp(l->view.data, c.data(), 6) == 0);
  CHECK(std::memcmp(set.find("model.norm.weight")->view.data, b.data(), 16) == 0);

  // open_dir finds the index when there is no model.safetensors.
  SafetensorsSet d;
  REQUIRE(SafetensorsSet::open_dir(dir.path.string(), &d).ok());
  REQUIRE(d.size() == 3);
  REQUIRE(d.source() == dir.path.string());
}

TEST_CASE("safetensors: sharded checkpoint errors", "[safetensors]") {
  TempDir dir("sharderr");
  const std::vector<float> a = random_floats(4, 20);
  REQUIRE(write_safetensors(dir.file("s1.safetensors"), {{"x", DType::kF32, {4}, a.data()}}, {}).ok());
  REQUIRE(write_safetensors(dir.file("s2.safetensors"), {{"x", DType::kF32, {4}, a.data()}}, {}).ok());
  const std::string idx = dir.file("model.safetensors.index.json");
  SafetensorsSet set;

  SECTION("a shard listed but absent is kIo") {
    REQUIRE(
        write_file_atomic(idx, "{\"weight_map\": {\"x\": \"s1.safetensors\", \"y\": \"gone.safetensors\"}}")
            .ok());
    Status st = SafetensorsSet::open_index(idx, &set);
    REQUIRE(st.code() == StatusCode::kIo);
    CHECK(contains(st.message(), "gone.safetensors"));
    CHECK(contains(st.message(), idx));
  }
  SECTION("a tensor listed but not in its shard is kMissingTensor") {
    REQUIRE(write_file_atomic(idx, "{\"weight_map\": {\"x\": \"s1.safetensors\", \"y\": \"s1.safetensors\"}}")
                .ok());
    Status st = SafetensorsSet::open_index(idx, &set);
    REQUIRE(st.code() == StatusCode::kMissingTensor);
    CHECK(contains(st.message(), "'y'"));
    CHECK(contains(st.message(), dir.file("s1.safetensors")));
  }
  SECTION("the same tensor in two shards is kIo") {
    REQUIRE(write_file_atomic(idx, "{\"weight_map\": {\"x\": \"s1.safetensors\", \"z\": \"s2.safetensors\"}}")
                .ok());
    REQUIRE(write_safetensors(dir.file("s2.safetensors"),
                              {{"x", DType::kF32, {4}, a.data()}, {"z", DType::kF32, {4}, a.data()}}, {})
                .ok());
    Status st = SafetensorsSet::open_index(idx, &set);
    REQUIRE(st.code() == StatusCode::kIo);
    CHECK(contains(st.message(), "'x'"));
    CHECK(contains(st.message(), "two files"));
  }
  SECTION("a shard name leaving the directory is kBadHeader") {
    for (const char* bad : {"../s1.safetensors", "/etc/passwd", "sub/s1.safetensors", "..", ""}) {
      REQUIRE(write_file_atomic(idx, std::string("{\"weight_map\": {\"x\": \"") + bad + "\"}}").ok());
      Status st = SafetensorsSet::open_index(idx, &set);
      INFO(bad);
      REQUIRE(st.code() == StatusCode::kBadHeader);
      CHECK(contains(st.message(), idx));
    }
  }
  SECTION("a malformed index is kBadHeader") {
    for (const char* bad : {"{", "[]", "{\"weight_map\": []}", "{\"metadata\": {}}",
                            "{\"weight_map\": {\"x\": 1}}", "{\"weight_map\": {}}"}) {
      REQUIRE(write_file_atomic(idx, bad).ok());
      INFO(bad);
      REQUIRE(SafetensorsSet::open_index(idx, &set).code() == StatusCode::kBadHeader);
    }
  }
  REQUIRE(set.size() == 0);
}

TEST_CASE("safetensors: open_dir prefers model.safetensors and reports an empty directory", "[safetensors]") {
  TempDir dir("opendir");
  SafetensorsSet set;
  Status st = SafetensorsSet::open_dir(dir.path.string(), &set);
  REQUIRE(st.code() == StatusCode::kIo);
  CHECK(contains(st.message(), dir.path.string()));
  write_two(dir);
  REQUIRE(write_file_atomic(dir.file("model.safetensors.index.json"), "{broken").ok());
  REQUIRE(SafetensorsSet::open_dir(dir.path.string() + "/", &set).ok());
  REQUIRE(set.size() == 2);
  REQUIRE(set.files()[0].path == dir.file("model.safetensors"));
}

TEST_CASE("safetensors: misaligned data (unpadded header) is read correctly", "[safetensors]") {
  TempDir dir("align");
  const std::vector<float> v = random_floats(5, 30);
  std::string data(reinterpret_cast<const char*>(v.data()), 20);
  // Pad the header to an odd length: the data section starts at an odd offset.
  std::string header = "{\"w\": {\"dtype\": \"F32\", \"shape\": [5], \"data_offsets\": [0, 20]}}";
  header.resize(header.size() + 5 + header.size() % 2, ' ');
  REQUIRE(header.size() % 2 == 1);
  const std::string path = dir.file("odd.safetensors");
  write_bytes(path, raw_image(header, data));
  SafetensorsSet set;
  REQUIRE(SafetensorsSet::open_file(path, &set).ok());
  const TensorInfo* t = set.find("w");
  REQUIRE(reinterpret_cast<uintptr_t>(t->view.data) % 4 == 0);
  for (int i = 0; i < 5; ++i) REQUIRE(t->view.as<float>()[i] == v[static_cast<size_t>(i)]);
}

TEST_CASE("safetensors: writer rejects bad input and leaves no partial file", "[safetensors]") {
  TempDir dir("writer");
  const float x[2] = {1, 2};
  const std::string path = dir.file("w.safetensors");
  CHECK(write_safetensors(path, {{"a", DType::kF32, {2}, x}, {"a", DType::kF32, {2}, x}}, {}).code() ==
        StatusCode::kInvalidArgument);
  CHECK(write_safetensors(path, {{"a", DType::kF32, {-1}, x}}, {}).code() == StatusCode::kInvalidArgument);
  CHECK(write_safetensors(path, {{"", DType::kF32, {2}, x}}, {}).code() == StatusCode::kInvalidArgument);
  CHECK(write_safetensors(path, {{"__metadata__", DType::kF32, {2}, x}}, {}).code() ==
        StatusCode::kInvalidArgument);
  CHECK(write_safetensors(path, {{"a", DType::kF32, {2}, nullptr}}, {}).code() ==
        StatusCode::kInvalidArgument);
  CHECK(write_safetensors(path, {{"a", DType::kF32, {1ll << 62, 8}, x}}, {}).code() ==
        StatusCode::kInvalidArgument);
  CHECK(write_safetensors(path, {{"bad\xff", DType::kF32, {2}, x}}, {}).code() ==
        StatusCode::kInvalidArgument);
  CHECK_FALSE(fs::exists(path));
  Status st = write_safetensors(dir.file("no/such/dir/w.safetensors"), {{"a", DType::kF32, {2}, x}}, {});
  CHECK(st.code() == StatusCode::kIo);
  CHECK(contains(st.message(), "no/such/dir"));

  // Overwriting an existing file replaces it atomically.
  REQUIRE(write_safetensors(path, {{"a", DType::kF32, {2}, x}}, {}).ok());
  REQUIRE(write_safetensors(path, {{"b", DType::kF32, {1}, x}}, {}).ok());
  SafetensorsSet set;
  REQUIRE(SafetensorsSet::open_file(path, &set).ok());
  REQUIRE(set.size() == 1);
  REQUIRE(set.find("b") != nullptr);
  REQUIRE(tmp_files_beside(path) == 0);
}

TEST_CASE("safetensors: random corruption never crashes and always yields a coded error or a valid set",
          "[safetensors]") {
  TempDir dir("corrupt");
  const std::string good = read_bytes(write_two(dir));
  std::mt19937 rng(1234);
  for (int iter = 0; iter < 2000; ++iter) {
    std::string b = good;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) b[rng() % b.size()] = static_cast<char>(rng() & 0xff);
    if (rng() % 4 == 0) b.resize(rng() % b.size());
    SafetensorsSet set;
    Status st = SafetensorsSet::from_buffer(b.data(), b.size(), "fuzz", &set);
    if (st.ok()) {
      for (const TensorInfo& t : set) {
        volatile uint8_t sink = 0;
        const uint8_t* p = static_cast<const uint8_t*>(t.view.data);
        for (size_t i = 0; i < t.nbytes(); ++i) sink = static_cast<uint8_t>(sink ^ p[i]);
        (void)sink;
      }
    } else {
      CHECK(contains(st.message(), "fuzz"));
    }
  }
}

TEST_CASE("safetensors: files written by the Python safetensors library open (tests/data)", "[safetensors]") {
  const fs::path root = fs::path(MSA_TEST_DATA_DIR) / "goldens";
  REQUIRE(fs::is_directory(root));
  int n = 0;
  for (const fs::directory_entry& e : fs::directory_iterator(root)) {
    if (e.path().extension() != ".safetensors") continue;
    INFO(e.path().string());
    SafetensorsSet set;
    Status st = SafetensorsSet::open_file(e.path().string(), &set);
    INFO(st.to_string());
    REQUIRE(st.ok());
    REQUIRE(set.size() > 0);
    // The data section is fully covered by the tensors, as the reference writer lays it out.
    CHECK(set.files()[0].file_size == 8 + set.files()[0].header_size + set.total_bytes());
    for (const TensorInfo& t : set) CHECK(t.view.nbytes() == t.nbytes());
    ++n;
  }
  CHECK(n > 0);
}
