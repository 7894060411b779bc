// End-to-end throughput of the engine on the CUDA backend (tests/gpu/run.sh runs it on a lent card): a
// checkpoint of the MSA-4B shapes (init_model preset "msa-4b-shape": 36 layers, hidden 2560, 32 / 8 heads x 128,
// random bf16 weights, the real tokenizer) is written to a temporary directory, bound to the GPU, then
//   encode   N documents of ~L tokens (stage 1, packed batches, pooling on the device) -> tokens/s
//   prefill  one question over the bank (routing in every router layer, pages staged) -> ms, tokens/s
//   decode   M tokens, greedy                                                         -> tokens/s
// Peers measured in the same run on the same card: device-to-device copy bandwidth (decode streams every weight
// once per token: its floor is weight bytes / bandwidth) and, for encode, the achieved FLOP rate
// (2 x parameters touched x tokens / s) next to the card's cuBLAS bf16 GEMM rate on an MSA-4B-shaped GEMM.
// Prints "bench_gpu_engine | metric | value | unit | peer | ratio" rows. Without a device: SKIP, exit 77.
// usage: bench_gpu_engine [preset (msa-4b-shape)] [documents (256)] [decode tokens (64)]
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "backend/registry.h"
#include "engine/encoder.h"
#include "engine/session.h"
#include "model/device_model.h"
#include "model/init_model.h"
#include "model/model.h"

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

bool ok(const msa::Status& s, const char* what) {
  if (!s.ok()) std::printf("FAIL %s: %s\n", what, s.to_string().c_str());
  return s.ok();
}

void row(const char* metric, double value, const char* unit, const char* peer, double peer_value) {
  std::printf("bench_gpu_engine | %-34s | %12.2f | %-9s | %-40s | %s\n", metric, value, unit, peer,
              peer_value > 0 ? std::to_string(value / peer_value).c_str() : "-");
}

// Device-to-device copy bandwidth through the backend (GB/s, read + write counted once each).
double copy_bandwidth(msa::Backend* be) {
  const size_t bytes = size_t{1} << 30;
  msa::DeviceBuffer a, b;
  if (!be->alloc(bytes, &a).ok() || !be->alloc(bytes, &b).ok()) return 0;
  (void)be->copy(b.data(), a.data(), bytes);
  (void)be->synchronize();
  const auto t0 = Clock::now();
  const int reps = 10;
  for (int i = 0; i < reps; ++i) (void)be->copy(b.data(), a.data(), bytes);
  (void)be->synchronize();
  return 2.0 * reps * static_cast<double>(bytes) / seconds_since(t0) / 1e9;
}

// cuBLAS-backed matmul rate of the backend on an MSA-4B MLP shape (T = 4096 rows, 2560 -> 9728, bf16 weights).
double gemm_tflops(msa::Backend* be) {
  const int64_t t = 4096, in = 2560, out = 9728;
  msa::DeviceBuffer x, y, w;
  if (!be->alloc(static_cast<size_t>(t * in) * 4, &x).ok() || !be->alloc(static_cast<size_t>(t * out) * 4, &y).ok())
    return 0;
  std::vector<uint16_t> host(static_cast<size_t>(out * in), 0x3c00);  // bf16 ~ 0.0078
  msa::TensorView hv;
  hv.dtype = msa::DType::kBF16;
  hv.shape = {out, in};
  hv.data = host.data();
  msa::TensorView dw;
  if (!be->prepare_weight(hv, &dw, &w).ok()) return 0;
  std::vector<float> xs(static_cast<size_t>(t * in), 0.01f);
  (void)be->upload(x.data(), xs.data(), xs.size() * 4);
  (void)be->matmul(x.as<float>(), t, dw, y.as<float>());
  (void)be->synchronize();
  const auto t0 = Clock::now();
  const int reps = 10;
  for (int i = 0; i < reps; ++i) (void)be->matmul(x.as<float>(), t, dw, y.as<float>());
  (void)be->synchronize();
  return 2.0 * reps * static_cast<double>(t * in * out) / seconds_since(t0) / 1e12;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string preset = argc > 1 ? argv[1] : "msa-4b-shape";
  const int n_docs = argc > 2 ? std::atoi(argv[2]) : 256;
  const int n_decode = argc > 3 ? std::atoi(argv[3]) : 64;
  msa::BackendParams bp;
  bp.name = "cuda";
  std::unique_ptr<msa::Backend> gpu;
  const msa::Status gs = msa::create_backend(bp, &gpu);
  if (gs.code() == msa::StatusCode::kNoDevice || gs.code() == msa::StatusCode::kUnsupported) {
    std::printf("SKIP: no CUDA device (%s)\n", gs.to_string().c_str());
    return 77;
  }
  if (!ok(gs, "cuda backend")) return 1;
  std::printf("bench_gpu_engine: %s, preset %s, %d documents, %d decode tokens\n",
              gpu->device_description().c_str(), preset.c_str(), n_docs, n_decode);
  const double bw = copy_bandwidth(gpu.get());
  const double gemm = gemm_tflops(gpu.get());
  row("peer: D2D copy bandwidth", bw, "GB/s", "-", 0);
  row("peer: matmul 4096x2560->9728 bf16", gemm, "TFLOP/s", "-", 0);

  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("msa_bench_gpu_engine_" + std::to_string(::getpid()));
  msa::InitModelOptions io;
  io.preset = preset;
  io.seed = 3;
  io.tokenizer_dir = MSA_SHARED_DIR "/data/qwen3-tokenizer";
  io.out_dir = dir.string();
  auto t0 = Clock::now();
  std::unique_ptr<msa::Model> model;
  int rc = 1;
  if (ok(msa::init_model(io), "init_model") && ok(msa::Model::load(dir.string(), msa::ModelLoadOptions(), &model), "load")) {
    std::printf("bench_gpu_engine: checkpoint written and mapped in %.1f s\n", seconds_since(t0));
    t0 = Clock::now();
    std::unique_ptr<msa::DeviceModel> dm;
    if (ok(msa::DeviceModel::create(*model, gpu.get(), &dm), "weights to the device")) {
      const double up_s = seconds_since(t0);
      row("weights upload", static_cast<double>(dm->weights().device_bytes()) / up_s / 1e9, "GB/s", "-", 0);
      std::unique_ptr<msa::MemoryBank> bank;
      std::vector<std::string> docs;
      for (int i = 0; i < n_docs; ++i) {
        std::string d = "Record " + std::to_string(i) + ".";
        for (int s = 0; s < 40; ++s) d += " Sentence " + std::to_string(s) + " of record " + std::to_string(i) + " about topic " + std::to_string((i * 7 + s) % 97) + ".";
        docs.push_back(d);
      }
      std::vector<std::string_view> texts(docs.begin(), docs.end());
      if (ok(msa::create_memory_bank(*dm, &bank, msa::PageDType::kInt8), "bank")) {
        msa::EncoderOptions eo;
        eo.batch_tokens = 8192;
        msa::Encoder enc(*dm, eo);
        t0 = Clock::now();
        if (ok(enc.add_documents(bank.get(), texts), "encode")) {
          const double s = seconds_since(t0);
          msa::MemoryStats st = bank->stats();
          const msa::ModelConfig& c = model->config();
          const int64_t last = c.msa.router_layers.back();
          // Parameters touched per token by encode: the layers up to the last router layer (+ router_k).
          const double frac = static_cast<double>(last + 1) / static_cast<double>(c.num_hidden_layers);
          const double flops = 2.0 * static_cast<double>(model->n_parameters()) * frac * static_cast<double>(st.n_tokens);
          row("encode", static_cast<double>(st.n_tokens) / s, "tokens/s", "-", 0);
          row("encode achieved matmul rate", flops / s / 1e12, "TFLOP/s", "matmul 4096x2560->9728 bf16", gemm);
          msa::Session session(*dm, bank.get());
          msa::GenerateOptions go;
          go.mode = msa::GenerateMode::kPlain;
          go.max_new_tokens = n_decode;
          go.sampling.use_model_defaults = false;
          go.sampling.do_sample = false;
          go.on_logits = [](const msa::LogitsStep&, float* logits, int64_t) {
            logits[198] = 1e30f;  // never EOS: decode exactly n_decode tokens
            return 0;
          };
          msa::GenerateResult r;
          if (ok(session.generate("Which record talks about topic 42?", go, &r), "generate")) {
            row("prefill (routing, page staging)", r.timings.prefill_ms, "ms", "-", 0);
            row("prefill", 1000.0 * static_cast<double>(r.timings.prompt_tokens) / r.timings.prefill_ms,
                "tokens/s", "-", 0);
            row("decode", r.timings.decode_tokens_per_s, "tokens/s", "-", 0);
            // bw counts read + write traffic; decode reads every weight byte once per token.
            const double floor_tps = bw * 1e9 / static_cast<double>(dm->weights().device_bytes());
            row("decode vs weight-streaming floor", r.timings.decode_tokens_per_s, "tokens/s",
                "weights once per token at copy bandwidth", floor_tps);
            rc = 0;
          }
        }
      }
    }
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return rc;
}
