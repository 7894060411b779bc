#!/usr/bin/env bash
# Installs the Debian packages libmsa builds with, only those that are missing (idempotent).
# Sourced by scripts/test.sh and scripts/demo.sh. Never needs torch.
msa_install_deps() {
  local pkgs=(build-essential cmake pkg-config libeigen3-dev libzstd-dev catch2 libbenchmark-dev
              nlohmann-json3-dev libpcre2-dev libutf8proc-dev libxxhash-dev python3)
  if [[ "${MSA_WITH_FUZZ:-1}" == "1" ]]; then
    pkgs+=(clang libclang-rt-14-dev)
  fi
  local missing=()
  for p in "${pkgs[@]}"; do
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
