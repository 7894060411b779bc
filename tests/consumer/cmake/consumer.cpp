// find_package(msa) consumer, C++: loads a checkpoint and tokenizes through the RAII layer.
#include <msa/msa.hpp>

#include <cstdio>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  try {
    msa::check_version();
    msa::Model model(argv[1]);
    std::vector<int32_t> ids = model.tokenizer().tokenize("Hello from CMake");
    std::printf("cmake consumer (shared, C++): libmsa %s, %d layers, %zu tokens\n", msa_version(),
                model.info().n_layers, ids.size());
    return ids.empty() ? 1 : 0;
  } catch (const msa::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
