# Third-party dependencies, all from Debian packages (scripts/deps.sh installs them). No vendored copies.
find_package(Threads REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(ZSTD REQUIRED IMPORTED_TARGET libzstd)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
pkg_check_modules(UTF8PROC REQUIRED IMPORTED_TARGET libutf8proc)
pkg_check_modules(XXHASH REQUIRED IMPORTED_TARGET libxxhash)

add_library(msa_deps INTERFACE)
target_link_libraries(msa_deps INTERFACE
  Threads::Threads nlohmann_json::nlohmann_json
  PkgConfig::ZSTD PkgConfig::PCRE2 PkgConfig::UTF8PROC PkgConfig::XXHASH)
target_compile_definitions(msa_deps INTERFACE PCRE2_CODE_UNIT_WIDTH=8)

if(MSA_BUILD_TESTS)
  find_package(Catch2 2 REQUIRED)
endif()
if(MSA_BUILD_BENCHMARKS)
  find_package(benchmark REQUIRED)
  # Eigen is a peer in two benchmarks (bench_matmul, bench_router), never part of the library's link.
  find_package(Eigen3 3.3 REQUIRED NO_MODULE)
endif()
