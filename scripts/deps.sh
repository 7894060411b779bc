#!/usr/bin/env bash
# Installs the Debian packages libmsa builds with, only those that are missing (idempotent).
# Sourced by scripts/test.sh and scripts/demo.sh. Never needs torch.
msa_install_deps() {
  local pkgs=(build-essential cmake pkg-config libeigen3-dev libzstd-dev catch2 libbenchmark-dev
              nlohmann-json3-dev libpcre2-dev libutf8proc-dev libxxhash-dev python3
              abigail-tools)  # abidw/abidiff: scripts/check_abi.sh
  if [[ "${MSA_WITH_FUZZ:-1}" == "1" ]]; then
    pkgs+=(clang libclang-rt-14-dev)
  fi
  msa_install_packages "${pkgs[@]}"
}

# Installs the named Debian packages that are not installed yet (idempotent).
msa_install_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "[deps] installing: ${missing[*]}"
    local sudo=""
    [[ $(id -u) -ne 0 ]] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# Toolchains of the FFI examples (scripts/examples.sh), each installed only when missing: cargo (Debian
# cargo; a rustup install in ~/.cargo/bin is used as is), Go (Debian golang-go), Zig (PyPI ziglang, run as
# `python3 -m ziglang`). Zig is pinned to 0.14.1 in its own directory (MSA_ZIG_DIR), because Zig 0.16 removed
# @cImport, which the Zig example demonstrates; it does not touch another ziglang installed for Python.
MSA_ZIG_VERSION=0.14.1
MSA_ZIG_DIR="${MSA_TOOLCHAIN_DIR:-$HOME/.cache/msa-toolchains}/ziglang-$MSA_ZIG_VERSION"
msa_install_example_toolchains() {
  [[ -x "$HOME/.cargo/bin/cargo" ]] && export PATH="$PATH:$HOME/.cargo/bin"
  command -v cargo >/dev/null 2>&1 || msa_install_packages cargo
  command -v go >/dev/null 2>&1 || msa_install_packages golang-go
  if ! PYTHONPATH="$MSA_ZIG_DIR" python3 -c 'import ziglang' >/dev/null 2>&1; then
    echo "[deps] installing ziglang==$MSA_ZIG_VERSION (PyPI) into $MSA_ZIG_DIR"
    python3 -m pip --version >/dev/null 2>&1 || msa_install_packages python3-pip
    python3 -m pip install -q --disable-pip-version-check --target "$MSA_ZIG_DIR" "ziglang==$MSA_ZIG_VERSION" 2>&1 |
      grep -v -i "running pip as the 'root' user" || true
  fi
}

# Runs the pinned Zig.
msa_zig() { PYTHONPATH="$MSA_ZIG_DIR" python3 -m ziglang "$@"; }

# Number of parallel build jobs.
msa_jobs() { nproc 2>/dev/null || echo 2; }

# CUDA on when nvcc is available (the toolkit compiles and links even without a GPU).
msa_cuda_flag() {
  if command -v nvcc >/dev/null 2>&1 || [[ -x /usr/local/cuda/bin/nvcc ]]; then
    echo "-DMSA_CUDA=ON -DCMAKE_CUDA_COMPILER=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)"
  else
    echo "-DMSA_CUDA=OFF"
  fi
}

# Compiler-cache flags for CMake when ccache is installed (it is not required; a fresh machine builds without
# it). The caller exports CCACHE_BASEDIR=<source root> so clones in other directories share the cache.
msa_ccache_flags() {
  if command -v ccache >/dev/null 2>&1; then
    echo "-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache"
  fi
}
