// CPU emulation of CUDA thread blocks for the kernels written over cuda/kernel_compat.cuh (include this header,
// with MSA_KERNEL_EMULATION defined, before any kernel header). Every thread of a block is a cooperative fiber
// (ucontext) that runs until its next barrier: __syncthreads() (all threads of the block), __syncwarp() or a
// warp shuffle (the 32 lanes of its warp). A barrier opens only when every live thread it names has reached
// it; a thread waiting at a barrier that can never open (a divergent __syncthreads / __syncwarp) fails the
// test with a message. Blocks of the grid run one after another. Dynamic shared memory and every static
// __shared__ object are poisoned with 0xff bytes before each block, so reading a byte the kernel did not write
// shows up as NaN / garbage in the results.
#pragma once

#include <ucontext.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <vector>

// ------------------------------------------------------------------------------------ the CUDA vector types
struct __attribute__((may_alias, aligned(16))) float4 {
  float x, y, z, w;
};
struct __attribute__((may_alias, aligned(16))) uint4 {
  uint32_t x, y, z, w;
};
struct __attribute__((may_alias, aligned(8))) uint2 {
  uint32_t x, y;
};
struct __attribute__((may_alias, aligned(4))) char4 {
  signed char x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
inline uint4 make_uint4(uint32_t x, uint32_t y, uint32_t z, uint32_t w) { return uint4{x, y, z, w}; }

namespace msa_emu {

struct Dim3 {
  unsigned x = 1, y = 1, z = 1;
};
inline Dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace detail {
enum class Wait { kNone, kBlock, kWarp };
struct Fiber {
  ucontext_t ctx{};
  std::vector<char> stack;
  bool done = false;
  Wait wait = Wait::kNone;
};
inline ucontext_t sched{};
inline std::vector<Fiber> fibers;
inline int current = 0;
inline const std::function<void()>* body = nullptr;
inline std::vector<unsigned char> smem;
inline unsigned char* smem_aligned = nullptr;
constexpr size_t kStaticSmemBytes = 48 * 1024;  // the device's static __shared__ limit per block
inline std::vector<unsigned char> static_smem;
inline size_t static_used = 0;
inline std::map<const void*, size_t> static_slots;
inline std::vector<uint64_t> shfl_slots;
inline void entry() {
  (*body)();
  fibers[static_cast<size_t>(current)].done = true;  // returns to `sched` through uc_link
}
inline void wait_at(Wait w) {
  Fiber& f = fibers[static_cast<size_t>(current)];
  f.wait = w;
  swapcontext(&f.ctx, &sched);
}
[[noreturn]] inline void die(const char* what) {
  std::printf("FAIL: emulation: %s (block %u,%u)\n", what, blockIdx.x, blockIdx.y);
  std::exit(1);
}
}  // namespace detail

inline unsigned char* shared_memory() { return detail::smem_aligned; }

// The block's object for the __shared__ declaration identified by tag (same address for every thread).
inline void* static_shared(const void* tag, size_t bytes, size_t align) {
  using namespace detail;
  auto it = static_slots.find(tag);
  if (it == static_slots.end()) {
    const size_t off = (static_used + align - 1) / align * align;
    if (off + bytes > kStaticSmemBytes) die("static shared memory beyond 48 KiB");
    static_used = off + bytes;
    it = static_slots.emplace(tag, off).first;
  }
  return static_smem.data() + it->second;
}

inline void syncthreads() { detail::wait_at(detail::Wait::kBlock); }
inline void syncwarp() { detail::wait_at(detail::Wait::kWarp); }

// __shfl_xor_sync(0xffffffff, v, lane_mask): every lane of the warp must take part.
template <typename T>
T shfl_xor(T v, int lane_mask) {
  static_assert(sizeof(T) <= sizeof(uint64_t), "shuffle of a 1..8-byte value");
  const unsigned t = static_cast<unsigned>(detail::current);
  std::memcpy(&detail::shfl_slots[t], &v, sizeof(T));
  syncwarp();
  const unsigned src = (t & ~31u) | ((t & 31u) ^ static_cast<unsigned>(lane_mask & 31));
  if (src >= blockDim.x) detail::die("warp shuffle from a lane past the block");
  T r;
  std::memcpy(&r, &detail::shfl_slots[src], sizeof(T));
  syncwarp();
  return r;
}

// Runs body for every thread of every block (2-D grid, 1-D block), blocks one after another.
inline void launch(Dim3 grid, unsigned block, size_t smem_bytes, const std::function<void()>& body) {
  using namespace detail;
  detail::body = &body;
  gridDim = grid;
  blockDim = Dim3{block, 1, 1};
  fibers.resize(block);
  shfl_slots.assign(block, 0);
  for (Fiber& f : fibers) {
    if (f.stack.empty()) f.stack.resize(256 * 1024);
  }
  for (unsigned by = 0; by < grid.y; ++by) {
    for (unsigned bx = 0; bx < grid.x; ++bx) {
      blockIdx = Dim3{bx, by, 0};
      smem.assign(smem_bytes + 16, 0xff);  // poison
      smem_aligned = smem.data() + (16 - reinterpret_cast<uintptr_t>(smem.data()) % 16) % 16;
      static_smem.assign(kStaticSmemBytes, 0xff);
      static_used = 0;
      static_slots.clear();
      for (Fiber& f : fibers) {
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = f.stack.data();
        f.ctx.uc_stack.ss_size = f.stack.size();
        f.ctx.uc_link = &sched;
        makecontext(&f.ctx, entry, 0);
        f.done = false;
        f.wait = Wait::kNone;
      }
      for (;;) {
        for (unsigned t = 0; t < block; ++t) {
          Fiber& f = fibers[t];
          if (f.done || f.wait != Wait::kNone) continue;
          current = static_cast<int>(t);
          threadIdx.x = t;
          swapcontext(&sched, &f.ctx);
        }
        // Every live thread now waits at a barrier. Open the warp barriers that all their lanes reached, else
        // the block barrier when all threads reached it.
        unsigned n_done = 0, n_block = 0;
        for (const Fiber& f : fibers) {
          n_done += f.done ? 1 : 0;
          n_block += (!f.done && f.wait == Wait::kBlock) ? 1 : 0;
        }
        if (n_done == block) break;
        bool opened = false;
        for (unsigned w0 = 0; w0 < block; w0 += 32) {
          const unsigned w1 = w0 + 32 < block ? w0 + 32 : block;
          unsigned at_warp = 0;
          for (unsigned t = w0; t < w1; ++t) at_warp += fibers[t].wait == Wait::kWarp ? 1 : 0;
          if (at_warp == 0) continue;
          if (at_warp != w1 - w0) continue;  // some lane elsewhere: reported below if nothing can move
          for (unsigned t = w0; t < w1; ++t) fibers[t].wait = Wait::kNone;
          opened = true;
        }
        if (opened) continue;
        if (n_block == block - n_done) {
          if (n_done != 0) {
            std::printf("FAIL: emulation: __syncthreads reached by %u threads while %u exited (divergent barrier)\n",
                        n_block, n_done);
            std::exit(1);
          }
          for (Fiber& f : fibers) f.wait = Wait::kNone;
          continue;
        }
        std::printf("FAIL: emulation: deadlock: %u threads at __syncthreads, %u at a warp barrier, %u exited\n",
                    n_block, block - n_done - n_block, n_done);
        std::exit(1);
      }
    }
  }
}
inline void launch(unsigned grid, unsigned block, size_t smem_bytes, const std::function<void()>& body) {
  launch(Dim3{grid, 1, 1}, block, smem_bytes, body);
}

}  // namespace msa_emu
