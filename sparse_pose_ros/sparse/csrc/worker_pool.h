// The kernel's own worker pool: a frame is a list of steps, each cut into chunks that the
// calling thread and persistent workers claim from one atomic counter (worker_pool.cpp).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

namespace spr_cpu {

// ---- threading ------------------------------------------------------------------------------------
// A frame is a list of steps (the stem, then per block: mask, index lists, bands, scatter). A
// step is cut into chunks that the calling thread and a small pool of persistent workers claim
// from one atomic counter; the caller waits until every chunk of a step is *done* (not until
// every thread has *arrived*), then opens the next step. Why not OpenMP regions/barriers: on a
// VM vCPU that has gone idle between frames (a camera gives one every 33 ms), waking a sleeping
// thread took ~8 ms here; with barriers every frame paid it (measured 10 ms instead of 1.9 ms
// for the backbone at 30 fps pacing), and with OMP_WAIT_POLICY=PASSIVE (what the node needs so
// idle threads do not spin on the cores ROS and ONNX Runtime use) each of ~70 regions a frame
// paid a futex wake. Here a worker that wakes late simply joins at whatever step is open, and
// the caller never waits for a thread that has not started; between the steps of a frame the
// workers spin (µs apart), after the frame they spin briefly and then sleep.
struct Step {
  int64_t n_items = 0;
  int64_t chunk = 1;
  bool serial = false;  // run by the caller alone (prefix sums, the soft-argmax combine)
  std::function<void(int64_t begin, int64_t end, int tid)> fn;
  int64_t n_chunks() const { return (n_items + chunk - 1) / chunk; }
};

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// Waits for ``ready()`` inside a frame, where the other side is µs away: ~0.2 ms of pause,
// then yield the core (the thread we wait for may be preempted on a loaded machine).
template <typename Ready>
inline void spin_until(Ready&& ready) {
  constexpr int kSpins = 1 << 12;
  for (int spins = 0; !ready(); ++spins) {
    if (spins < kSpins) {
      cpu_relax();
    } else {
      std::this_thread::yield();
    }
  }
}

inline int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Runs ``steps`` in order on the caller (tid 0) and whichever workers of the pool for ``threads``
// are awake. ``done_at`` (optional, one entry a step): steady-clock ns at which each step was
// complete (profiling; 0 marks a step with nothing to do). ``linger_us``: after this frame the
// workers spin at least that long before they sleep (see BlockSequence::run in module.cpp).
void run_steps(int64_t threads, const std::vector<Step>& steps, int64_t* done_at = nullptr,
               int64_t linger_us = 0);

// Wakes the pool's sleeping workers ahead of a frame and keeps them spinning for ``spin_us``
// (or into the frame, whichever comes first): called when a frame arrives, before its
// preprocessing, so that the backbone finds them hot (a worker woken into a running frame sits
// it out, see worker_loop). No-op for one thread.
void prewake(int64_t threads, int64_t spin_us);

// Chunks run by the workers of the pool for ``threads`` so far (diagnostics, benchmarks).
int64_t worker_chunks(int64_t threads);

}  // namespace spr_cpu
