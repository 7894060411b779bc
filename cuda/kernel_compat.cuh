// Portability layer of the CUDA kernels kept in portable headers (routing tier: routing_kernels.cuh, topk.cuh,
// page_gather.cuh; forward ops: ops_elementwise_kernels.cuh, ops_attention_kernels.cuh): compiled by nvcc they
// are ordinary CUDA; compiled by a host C++ compiler with MSA_KERNEL_EMULATION defined (tests/gpu/
// test_routing_emu.cpp, test_ops_emu.cpp, over tests/gpu/emu/block_emulator.h) the same kernel source runs on
// the CPU under a cooperative-fiber emulation of a thread block (threadIdx / blockIdx / __syncthreads /
// __syncwarp / warp shuffles / static and dynamic shared memory), so CI machines without a GPU still execute
// the kernels' index arithmetic, shared-memory layout, barrier and warp-reduction structure.
// Device math (expf, fmaf, fmaxf, sqrtf, double pow/cos/sin) maps to the host libm in the emulation: expf may
// differ by an ulp or two, as it does between the device and glibc.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <vector>

#if !defined(MSA_KERNEL_EMULATION)

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
// Inline namespace of the kernel headers' code: the emulated kernels get other symbol names than the device
// kernels' host stubs, so a test binary that links both (msa_cuda) never calls the wrong one.
#define MSA_KERNEL_ABI device_code
#define MSA_KERNEL __global__
#define MSA_DEV __device__ __forceinline__
#define MSA_DEVICE __device__
#define MSA_HD __host__ __device__
#define MSA_LAUNCH_BOUNDS(...) __launch_bounds__(__VA_ARGS__)
#define MSA_SYNC() __syncthreads()
#define MSA_SYNC_WARP() __syncwarp()
#define MSA_UNROLL _Pragma("unroll")
#define MSA_DYNAMIC_SMEM(name) extern __shared__ __align__(16) unsigned char name[]
#define MSA_SHARED(T, name) __shared__ T name
#define MSA_SHARED_ARRAY(T, name, n) __shared__ T name[n]
namespace msa::cuda::kern {
MSA_DEV float as_float(uint32_t u) { return __uint_as_float(u); }
MSA_DEV uint32_t as_uint(float f) { return __float_as_uint(f); }
// The byte permute (PRMT): result byte k = byte (selector nibble k & 7) of the 8 bytes {y:x} (x bytes 0-3).
MSA_DEV uint32_t byte_perm(uint32_t x, uint32_t y, uint32_t s) { return __byte_perm(x, y, s); }
MSA_DEV float add_rn(float a, float b) { return __fadd_rn(a, b); }
MSA_DEV float mul_rn(float a, float b) { return __fmul_rn(a, b); }
MSA_DEV float div_rn(float a, float b) { return __fdiv_rn(a, b); }
// Full-warp butterfly exchange: the value of lane (lane ^ lane_mask).
template <typename T>
MSA_DEV T shfl_xor(T v, int lane_mask) {
  return __shfl_xor_sync(0xffffffffu, v, lane_mask);
}
MSA_DEV float bf16_at(const void* p, int64_t i) { return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]); }
MSA_DEV float f16_at(const void* p, int64_t i) { return __half2float(static_cast<const __half*>(p)[i]); }
MSA_DEV unsigned long long atomic_min(unsigned long long* p, unsigned long long v) { return atomicMin(p, v); }
}  // namespace msa::cuda::kern

#else  // host emulation: the including file includes tests/gpu/emu/block_emulator.h first (namespace msa_emu:
       // threadIdx, ..., syncthreads(), syncwarp(), shfl_xor(), shared_memory(), static_shared(), and the CUDA
       // vector types float4, uint4, uint2, char4, make_*).

#include "core/dtype.h"

#define MSA_KERNEL_ABI emulated_code
#define MSA_KERNEL
#define MSA_DEV inline
#define MSA_DEVICE inline
#define MSA_HD
#define MSA_LAUNCH_BOUNDS(...)
#define MSA_SYNC() ::msa_emu::syncthreads()
#define MSA_SYNC_WARP() ::msa_emu::syncwarp()
#define MSA_UNROLL
#define MSA_DYNAMIC_SMEM(name) unsigned char* name = ::msa_emu::shared_memory()
// Static shared memory: one object per declaration and block, poisoned like the dynamic region (a function-
// local tag identifies the declaration).
#define MSA_SHARED(T, name)                                                                               \
  static char name##_msa_tag;                                                                             \
  T& name = *static_cast<T*>(::msa_emu::static_shared(&name##_msa_tag, sizeof(T), alignof(T)))
#define MSA_SHARED_ARRAY(T, name, n)                                                                      \
  static char name##_msa_tag;                                                                             \
  T* name = static_cast<T*>(::msa_emu::static_shared(&name##_msa_tag, sizeof(T) * (n), alignof(T)))
using ::msa_emu::blockDim;
using ::msa_emu::blockIdx;
using ::msa_emu::gridDim;
using ::msa_emu::threadIdx;
namespace msa::cuda::kern {
using std::max;  // CUDA's min / max overloads
using std::min;
template <typename T>
inline T shfl_xor(T v, int lane_mask) {
  return ::msa_emu::shfl_xor(v, lane_mask);
}
inline float bf16_at(const void* p, int64_t i) { return bf16_to_f32(static_cast<const uint16_t*>(p)[i]); }
inline float f16_at(const void* p, int64_t i) { return f16_to_f32(static_cast<const uint16_t*>(p)[i]); }
// Fibers are not preemptive: a read-modify-write is atomic.
inline unsigned long long atomic_min(unsigned long long* p, unsigned long long v) {
  const unsigned long long old = *p;
  if (v < old) *p = v;
  return old;
}
inline float as_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t as_uint(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline uint32_t byte_perm(uint32_t x, uint32_t y, uint32_t s) {
  const uint64_t both = (static_cast<uint64_t>(y) << 32) | x;
  uint32_t r = 0;
  for (int k = 0; k < 4; ++k) r |= static_cast<uint32_t>((both >> (8 * ((s >> (4 * k)) & 7u))) & 0xffu) << (8 * k);
  return r;
}
inline float add_rn(float a, float b) { return a + b; }
inline float mul_rn(float a, float b) { return a * b; }
inline float div_rn(float a, float b) { return a / b; }
}  // namespace msa::cuda::kern

#endif

#if defined(MSA_KERNEL_EMULATION)
#include <cstdio>
#include <cstdlib>
#endif

namespace msa::cuda::kern {
// Vector load / store of a T at p. The device requires p to be aligned to alignof(T) (a misaligned vector
// access is a fatal "misaligned address" error there): the emulation checks it and aborts with a message.
template <typename T>
MSA_DEV T ld(const void* p) {
#if defined(MSA_KERNEL_EMULATION)
  if (reinterpret_cast<uintptr_t>(p) % alignof(T) != 0) {
    std::printf("FAIL: emulation: misaligned %zu-byte load at %p\n", sizeof(T), p);
    std::exit(1);
  }
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
#else
  return *reinterpret_cast<const T*>(p);
#endif
}
template <typename T>
MSA_DEV void st(void* p, const T& v) {
#if defined(MSA_KERNEL_EMULATION)
  if (reinterpret_cast<uintptr_t>(p) % alignof(T) != 0) {
    std::printf("FAIL: emulation: misaligned %zu-byte store at %p\n", sizeof(T), p);
    std::exit(1);
  }
  std::memcpy(p, &v, sizeof(T));
#else
  *reinterpret_cast<T*>(p) = v;
#endif
}

// max that propagates NaN from either side (the CPU router's max_nan).
MSA_DEV float max_nan(float a, float b) { return (b > a || b != b) ? b : a; }
}  // namespace msa::cuda::kern

namespace msa::cuda::kern {
// Host helpers shared by the device path and the emulation test.

// CSR of a chunk -> document map (stable counting sort: chunk-ascending within each document); chunk_doc
// entries must lie in [0, n_documents).
inline void build_doc_csr(const std::vector<int32_t>& chunk_doc, int64_t n_documents, std::vector<int32_t>* offsets,
                          std::vector<int32_t>* chunks) {
  offsets->assign(static_cast<size_t>(n_documents) + 1, 0);
  for (int32_t d : chunk_doc) ++(*offsets)[static_cast<size_t>(d) + 1];
  for (size_t d = 0; d < static_cast<size_t>(n_documents); ++d) (*offsets)[d + 1] += (*offsets)[d];
  chunks->assign(chunk_doc.size(), 0);
  std::vector<int32_t> fill(offsets->begin(), offsets->end() - 1);
  for (size_t c = 0; c < chunk_doc.size(); ++c) {
    (*chunks)[static_cast<size_t>(fill[static_cast<size_t>(chunk_doc[c])]++)] = static_cast<int32_t>(c);
  }
}

// The CSR of build_doc_csr after chunks [first_chunk, first_chunk + n_new) were appended whose documents
// (new_chunk_doc) all lie in [old_docs, n_documents), as an add appends them: the first old_docs + 1 offsets and
// the first first_chunk chunk-list entries stay as they are (offsets[old_docs] == first_chunk, every earlier
// chunk belonging to an earlier document); offsets_tail receives offsets[old_docs + 1 .. n_documents],
// chunks_tail the appended chunk-list entries. False, outputs untouched, when a new chunk names an earlier
// document or one past n_documents: rebuild the whole map then.
inline bool extend_doc_csr(const int32_t* new_chunk_doc, int64_t n_new, int64_t first_chunk, int64_t old_docs,
                           int64_t n_documents, std::vector<int32_t>* offsets_tail, std::vector<int32_t>* chunks_tail) {
  for (int64_t c = 0; c < n_new; ++c) {
    if (new_chunk_doc[c] < old_docs || new_chunk_doc[c] >= n_documents) return false;
  }
  const size_t nd = static_cast<size_t>(n_documents - old_docs);
  std::vector<int32_t> start(nd + 1, 0);
  for (int64_t c = 0; c < n_new; ++c) ++start[static_cast<size_t>(new_chunk_doc[c] - old_docs) + 1];
  for (size_t d = 0; d < nd; ++d) start[d + 1] += start[d];
  offsets_tail->resize(nd);
  for (size_t d = 0; d < nd; ++d) (*offsets_tail)[d] = static_cast<int32_t>(first_chunk) + start[d + 1];
  chunks_tail->assign(static_cast<size_t>(n_new), 0);
  for (int64_t c = 0; c < n_new; ++c) {
    (*chunks_tail)[static_cast<size_t>(start[static_cast<size_t>(new_chunk_doc[c] - old_docs)]++)] =
        static_cast<int32_t>(first_chunk + c);
  }
  return true;
}

// rank[i] = position of ids[i] in ascending id order (ties by index).
inline std::vector<uint32_t> doc_id_ranks(const uint64_t* ids, int64_t n) {
  std::vector<int32_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return ids[a] < ids[b]; });
  std::vector<uint32_t> ranks(static_cast<size_t>(n));
  for (size_t i = 0; i < order.size(); ++i) ranks[static_cast<size_t>(order[i])] = static_cast<uint32_t>(i);
  return ranks;
}

// doc_id_ranks of ids[0, old_n + n_new) from the ranks of the first old_n (unchanged) when every new id exceeds
// old_max, the largest old id (what an add with fresh ids produces): the old ranks stay, tail receives the new
// documents' ranks. False, tail untouched, when some new id is not above old_max: rank everything again.
inline bool extend_id_ranks(const uint64_t* new_ids, int64_t n_new, int64_t old_n, uint64_t old_max,
                            std::vector<uint32_t>* tail) {
  for (int64_t i = 0; i < n_new && old_n > 0; ++i) {
    if (new_ids[i] <= old_max) return false;
  }
  *tail = doc_id_ranks(new_ids, n_new);
  for (uint32_t& r : *tail) r += static_cast<uint32_t>(old_n);
  return true;
}

// Launch plans of the elementwise kernels (ops_elementwise_kernels.cuh, backend_kernels.cuh).
inline constexpr int kEltThreads = 256;  // threads of the grid-stride and one-block-per-row kernels

// Grid for a grid-stride loop over n elements (blocks of kEltThreads).
inline unsigned elt_grid(int64_t n) {
  const int64_t blocks = (n + kEltThreads - 1) / kEltThreads;
  return static_cast<unsigned>(blocks < 32768 ? (blocks > 0 ? blocks : 1) : 32768);
}

// Threads for a one-block-per-row kernel: a multiple of 32, at most 256, not much more than the row.
inline int row_threads(int64_t dim) {
  int64_t t = (dim + 31) / 32 * 32;
  if (t > kEltThreads) t = kEltThreads;
  if (t < 32) t = 32;
  return static_cast<int>(t);
}

// Bits of the id-rank field of a top-k key for n documents (ranks < n <= 2^bits; at most 31).
inline int topk_low_bits(int64_t n) {
  int b = 1;
  while (b < 31 && (int64_t{1} << b) < n) ++b;
  return b;
}
}  // namespace msa::cuda::kern
