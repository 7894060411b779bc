// End to end on the CUDA backend against the CPU backend, on tiny MSA checkpoints written by init_model (the
// exact MSA-4B file format, random weights, the real Qwen3 tokenizer): stage-1 encode (pooled K̄/V̄/K̄ᴿ of every
// document and router layer), stage-2 routing (every document's score; the same top-k wherever the k-th gap
// exceeds the tolerance) and the first generation step's logits (within 1e-2 relative), for f32 and int8 page
// banks. The GPU computes the GEMMs in bf16 (inputs rounded to bf16, f32 accumulation), hence the tolerances.
// Without a CUDA device: "SKIP: no CUDA device", exit 77. Any mismatch or error: a FAIL line, exit 1.
// usage: test_engine_cuda [checkpoint preset (tiny)]
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
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

using msa::Status;

int g_failures = 0, g_checks = 0;

void expect(bool ok, const std::string& what) {
  ++g_checks;
  if (!ok) {
    ++g_failures;
    std::printf("FAIL %s\n", what.c_str());
  }
}

bool ok(const Status& s, const std::string& what) {
  expect(s.ok(), what + ": " + s.to_string());
  return s.ok();
}

// max |a - b| / max |a| (0 for two empty vectors).
double rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num = std::max(num, static_cast<double>(std::fabs(a[i] - b[i])));
    den = std::max(den, static_cast<double>(std::fabs(a[i])));
  }
  return den > 0 ? num / den : num;
}

std::vector<std::string> corpus() {
  std::vector<std::string> docs;
  const char* topics[] = {"the river Danube", "a lighthouse keeper", "volcanic soil", "the Fibonacci numbers",
                          "a recipe for bread", "the moons of Jupiter", "medieval castles", "the speed of sound"};
  for (int i = 0; i < 24; ++i) {
    std::string d = "Record " + std::to_string(i) + ": a note about " + topics[i % 8] + ".";
    for (int r = 0; r < i % 5; ++r) d += " It continues with detail number " + std::to_string(r) + ".";
    docs.push_back(d);
  }
  return docs;
}

void compare_banks(const msa::MemoryBank& cpu, const msa::MemoryBank& gpu, const char* tag) {
  expect(cpu.n_documents() == gpu.n_documents(), std::string(tag) + ": document count");
  const int64_t width = cpu.width();
  double worst = 0;
  for (int64_t i = 0; i < cpu.n_documents() && i < gpu.n_documents(); ++i) {
    const int64_t n = cpu.document(i).n_chunks;
    expect(n == gpu.document(i).n_chunks, std::string(tag) + ": chunks of document " + std::to_string(i));
    for (int s = 0; s < cpu.n_router_layers(); ++s) {
      std::vector<float> kc(static_cast<size_t>(n * width)), vc(kc.size()), kg(kc.size()), vg(kc.size());
      if (!ok(cpu.read_pages(s, i, kc.data(), vc.data()), "read_pages cpu") ||
          !ok(gpu.read_pages(s, i, kg.data(), vg.data()), "read_pages gpu"))
        return;
      worst = std::max({worst, rel_diff(kc, kg), rel_diff(vc, vg)});
    }
  }
  std::printf("  %-26s pooled K/V pages: max rel diff %.2e\n", tag, worst);
  expect(worst < 3e-2, std::string(tag) + ": pooled pages differ by " + std::to_string(worst));
}

void compare_routing(const msa::LayerRouting& c, const msa::LayerRouting& g, double tol, const char* tag) {
  expect(c.scores.size() == g.scores.size(), std::string(tag) + ": score counts");
  double worst = 0;
  for (size_t i = 0; i < c.scores.size() && i < g.scores.size(); ++i) {
    worst = std::max(worst, static_cast<double>(std::fabs(c.scores[i] - g.scores[i])));
  }
  std::printf("  %-26s layer %d: max |score diff| %.2e over %zu documents\n", tag, c.layer, worst, c.scores.size());
  expect(worst <= tol, std::string(tag) + ": scores differ by " + std::to_string(worst));
  // The top-k: identical wherever the gap between the k-th and the (k+1)-th CPU score exceeds 2 * tol.
  std::vector<float> sorted = c.scores;
  std::sort(sorted.begin(), sorted.end(), std::greater<float>());
  const size_t k = c.top.size();
  const bool clear_gap = k == sorted.size() || (k < sorted.size() && sorted[k - 1] - sorted[k] > 2 * tol);
  if (!clear_gap) {
    std::printf("  %-26s layer %d: k-th gap within tolerance, top-k not compared\n", tag, c.layer);
    return;
  }
  std::vector<uint64_t> ic, ig;
  for (const auto& d : c.top) ic.push_back(d.id);
  for (const auto& d : g.top) ig.push_back(d.id);
  std::sort(ic.begin(), ic.end());
  std::sort(ig.begin(), ig.end());
  expect(ic == ig, std::string(tag) + ": top-k ids differ at layer " + std::to_string(c.layer));
}

void run_case(const msa::Model& model, msa::Backend* cpu_be, msa::Backend* gpu_be, msa::PageDType dtype,
              const char* tag) {
  std::unique_ptr<msa::DeviceModel> dc, dg;
  if (!ok(msa::DeviceModel::create(model, cpu_be, &dc), "DeviceModel cpu") ||
      !ok(msa::DeviceModel::create(model, gpu_be, &dg), "DeviceModel cuda"))
    return;
  std::unique_ptr<msa::MemoryBank> bc, bg;
  if (!ok(msa::create_memory_bank(*dc, &bc, dtype), "bank cpu") ||
      !ok(msa::create_memory_bank(*dg, &bg, dtype), "bank cuda"))
    return;
  const std::vector<std::string> docs = corpus();
  std::vector<std::string_view> texts(docs.begin(), docs.end());
  msa::EncoderOptions eo;
  eo.batch_tokens = 256;  // several packed batches
  msa::Encoder ec(*dc, eo), eg(*dg, eo);
  if (!ok(ec.add_documents(bc.get(), texts), "encode cpu") || !ok(eg.add_documents(bg.get(), texts), "encode cuda"))
    return;
  compare_banks(*bc, *bg, tag);

  // Routing and generation over the CPU-encoded bank, so that only stage 2-3 differ.
  const std::string question = "What is said about the moons of Jupiter?";
  msa::Session sc(*dc, bc.get()), sg(*dg, bc.get());
  msa::GenerateOptions go;
  go.mode = msa::GenerateMode::kPlain;
  go.doc_top_k = 4;
  go.max_new_tokens = 1;
  go.record_scores = true;
  go.record_first_logits = true;
  go.sampling.use_model_defaults = false;
  go.sampling.do_sample = false;
  msa::GenerateResult rc, rg;
  if (!ok(sc.generate(question, go, &rc), "generate cpu") || !ok(sg.generate(question, go, &rg), "generate cuda"))
    return;
  expect(rc.routing.size() == rg.routing.size(), std::string(tag) + ": router layer count");
  for (size_t l = 0; l < rc.routing.size() && l < rg.routing.size(); ++l) {
    compare_routing(rc.routing[l], rg.routing[l], 2e-2, tag);
  }
  const double ld = rel_diff(rc.first_logits, rg.first_logits);
  std::printf("  %-26s first-step logits: max rel diff %.2e (limit 1e-2)\n", tag, ld);
  expect(ld <= 1e-2, std::string(tag) + ": first-step logits differ by " + std::to_string(ld));

  // Retrieval only (stops after the last router layer) gives the same routing as the generate call.
  msa::RouteOptions ro;
  ro.doc_top_k = 4;
  msa::RouteResult route;
  if (ok(sg.route(question, ro, &route), "route cuda")) {
    expect(route.layers.size() == rg.routing.size(), std::string(tag) + ": route layers");
    for (size_t l = 0; l < route.layers.size() && l < rg.routing.size(); ++l) {
      expect(route.layers[l].scores == rg.routing[l].scores, std::string(tag) + ": route == generate scores");
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string preset = argc > 1 ? argv[1] : "tiny";
  msa::BackendParams bp;
  bp.name = "cuda";
  std::unique_ptr<msa::Backend> gpu;
  const Status gs = msa::create_backend(bp, &gpu);
  if (gs.code() == msa::StatusCode::kNoDevice || gs.code() == msa::StatusCode::kUnsupported) {
    std::printf("SKIP: no CUDA device (%s)\n", gs.to_string().c_str());
    return 77;
  }
  if (!gs.ok()) {
    std::printf("FAIL create cuda backend: %s\n", gs.to_string().c_str());
    return 1;
  }
  bp.name = "cpu";
  std::unique_ptr<msa::Backend> cpu;
  if (!ok(msa::create_backend(bp, &cpu), "create cpu backend")) return 1;
  std::printf("test_engine_cuda: %s vs %s, preset %s\n", gpu->device_description().c_str(),
              cpu->device_description().c_str(), preset.c_str());

  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("msa_test_engine_cuda_" + std::to_string(::getpid()));
  msa::InitModelOptions io;
  io.preset = preset;
  io.seed = 11;
  io.tokenizer_dir = MSA_SHARED_DIR "/data/qwen3-tokenizer";
  io.out_dir = dir.string();
  std::unique_ptr<msa::Model> model;
  if (ok(msa::init_model(io), "init_model") &&
      ok(msa::Model::load(dir.string(), msa::ModelLoadOptions(), &model), "load")) {
    run_case(*model, cpu.get(), gpu.get(), msa::PageDType::kF32, "f32 pages");
    run_case(*model, cpu.get(), gpu.get(), msa::PageDType::kInt8, "int8 pages");
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  std::printf("test_engine_cuda: %d checks, %d failed\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
