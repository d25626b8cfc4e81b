// The worker pool behind run_steps (worker_pool.h: why a pool of our own and not OpenMP).
#include "worker_pool.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <map>
#include <mutex>

namespace spr_cpu {

namespace {

class Pool {
 public:
  Pool(int threads, int64_t idle_spin_us) : threads_(threads), idle_spin_us_(idle_spin_us) {
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
  }
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(sleep_m_);
      stop_.store(true);
    }
    sleep_cv_.notify_all();
    for (auto& t : workers_) t.join();
  }
  // Runs the steps in order on the caller (tid 0) and whichever workers are awake. ``done_at``
  // (optional, one entry a step): steady-clock ns at which each step was complete (profiling).
  // ``linger_us``: after this frame the workers spin at least that long (on top of the idle
  // spin) before they sleep, so that they are still awake when the caller comes back after
  // work of its own between frames (see BlockSequence::run).
  void run(const std::vector<Step>& steps, int64_t* done_at = nullptr, int64_t linger_us = 0) {
    std::lock_guard<std::mutex> one_frame_at_a_time(run_m_);
    steps_ = &steps;
    bool woken = false;  // one wake-up call a frame: workers only sleep between frames
    for (size_t p = 0; p < steps.size(); ++p) {
      const Step& s = steps[p];
      const int64_t n = s.n_chunks();
      if (done_at != nullptr) done_at[p] = 0;  // set below; 0 marks a step with nothing to do
      if (n <= 0) continue;
      if (s.serial || threads_ == 1 || n == 1) {
        for (int64_t c = 0; c < n; ++c) s.fn(c * s.chunk, std::min(s.n_items, (c + 1) * s.chunk), 0);
        if (done_at != nullptr) done_at[p] = now_ns();
        continue;
      }
      const uint64_t epoch = ++epoch_;
      done_.store(0, std::memory_order_relaxed);
      claim_.store(epoch << 32, std::memory_order_relaxed);
      cur_.store((epoch << 32) | static_cast<uint32_t>(p), std::memory_order_seq_cst);
      if (!woken) {
        wake_sleepers();  // a futex call per step while a worker wakes up cost ms on this VM
        woken = true;
      }
      work(p, epoch, 0);
      spin_until([&] { return done_.load(std::memory_order_acquire) >= n; });
      if (done_at != nullptr) done_at[p] = now_ns();
    }
    linger_until_ns_.store(linger_us > 0 ? now_ns() + linger_us * 1000 : 0,
                           std::memory_order_relaxed);
    cur_.store((++epoch_ << 32) | kIdle, std::memory_order_seq_cst);
    // A worker inside this frame may still read ``steps``: wait until it has seen kIdle.
    while (inside_.load(std::memory_order_seq_cst) != 0) cpu_relax();
    steps_ = nullptr;
  }

 private:
  static constexpr uint32_t kIdle = 0xFFFFFFFFu;

  static uint32_t phase_of(uint64_t c) { return static_cast<uint32_t>(c); }

  // Claims and runs chunks of step ``p`` while it is the open step (``epoch``).
  void work(size_t p, uint64_t epoch, int tid) {
    const Step& s = (*steps_)[p];
    const uint64_t n = static_cast<uint64_t>(s.n_chunks());
    uint64_t w = claim_.load(std::memory_order_acquire);
    for (;;) {
      if ((w >> 32) != epoch || (w & 0xFFFFFFFFu) >= n) return;
      if (!claim_.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel)) continue;
      const int64_t c = static_cast<int64_t>(w & 0xFFFFFFFFu);
      s.fn(c * s.chunk, std::min(s.n_items, (c + 1) * s.chunk), tid);
      if (tid != 0) worker_chunks_.fetch_add(1, std::memory_order_relaxed);
      done_.fetch_add(1, std::memory_order_release);
      w = claim_.load(std::memory_order_acquire);
    }
  }

 public:
  // Wakes sleeping workers ahead of a frame and keeps every worker spinning for ``spin_us``
  // (or until the frame starts, and through it): a worker then is hot when the frame opens
  // its first step and takes part, instead of waking into a running frame and sitting it out.
  void prewake(int64_t spin_us) {
    if (threads_ == 1 || spin_us <= 0) return;
    const int64_t until = now_ns() + spin_us * 1000;
    int64_t cur = linger_until_ns_.load(std::memory_order_relaxed);
    while (cur < until &&
           !linger_until_ns_.compare_exchange_weak(cur, until, std::memory_order_relaxed)) {
    }
    prewake_gen_.fetch_add(1, std::memory_order_seq_cst);
    wake_sleepers();
  }

 private:

  void wake_sleepers() {
    if (sleepers_.load(std::memory_order_seq_cst) == 0) return;
    { std::lock_guard<std::mutex> lk(sleep_m_); }
    sleep_cv_.notify_all();
  }

  // Waits until ``cur_`` differs from ``seen`` and is a step (not idle); false on stop.
  // ``slept``: whether the wait ended in the condition variable (the thread was asleep).
  bool wait_for_step(uint64_t& c, uint64_t seen, bool& slept) {
    slept = false;
    auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(idle_spin_us_);
    for (int spins = 0;; ++spins) {
      c = cur_.load(std::memory_order_acquire);
      if (stop_.load(std::memory_order_relaxed)) return false;
      if (c != seen && phase_of(c) != kIdle) return true;
      if ((spins & 63) != 0 || std::chrono::steady_clock::now() < until ||
          now_ns() < linger_until_ns_.load(std::memory_order_relaxed)) {
        cpu_relax();
        continue;
      }
      std::unique_lock<std::mutex> lk(sleep_m_);
      const uint64_t gen = prewake_gen_.load(std::memory_order_seq_cst);
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      bool stepped = false;
      sleep_cv_.wait(lk, [&] {
        c = cur_.load(std::memory_order_seq_cst);
        stepped = c != seen && phase_of(c) != kIdle;
        return stop_.load() || stepped || prewake_gen_.load(std::memory_order_seq_cst) != gen;
      });
      sleepers_.fetch_sub(1, std::memory_order_seq_cst);
      if (stop_.load()) return false;
      if (stepped) {
        slept = true;
        return true;
      }
      // pre-woken (prewake): spin again, hot, until the frame opens a step
      until = std::chrono::steady_clock::now() + std::chrono::microseconds(idle_spin_us_);
      spins = 0;
    }
  }

  void worker_loop(int tid) {
    uint64_t seen = cur_.load();
    for (;;) {
      uint64_t c = 0;
      bool slept = false;
      if (!wait_for_step(c, seen, slept)) return;
      if (slept) {
        // Woken for a frame that is already running: sit it out. On this VM a vCPU woken
        // from idle ran its first chunks so late that the caller, waiting for them, took
        // 10 ms instead of the 5.7 ms it needs alone (camera pacing, 33 ms between frames).
        // Back to back (worker still spinning) every frame is shared as usual.
        spin_until([&] {
          c = cur_.load(std::memory_order_acquire);
          return phase_of(c) == kIdle || stop_.load(std::memory_order_relaxed);
        });
        if (stop_.load(std::memory_order_relaxed)) return;
        seen = c;
        continue;
      }
      inside_.fetch_add(1, std::memory_order_seq_cst);
      c = cur_.load(std::memory_order_seq_cst);
      while (phase_of(c) != kIdle) {
        work(phase_of(c), c >> 32, tid);
        seen = c;
        // next step of the same frame: the caller opens it within µs (or ends the frame)
        spin_until([&] { return (c = cur_.load(std::memory_order_acquire)) != seen; });
      }
      seen = c;
      inside_.fetch_sub(1, std::memory_order_seq_cst);
    }
  }

  const int threads_;
  const int64_t idle_spin_us_;  // how long a worker spins after a frame before sleeping
  std::atomic<int64_t> linger_until_ns_{0};  // and until then (run's linger_us), if later
  std::atomic<uint64_t> prewake_gen_{0};      // bumped by prewake: sleepers wake up and spin

 public:
  // chunks the workers (not the caller) have run since the pool started: whether they take part
  std::atomic<int64_t> worker_chunks_{0};

 private:
  std::vector<std::thread> workers_;
  std::mutex run_m_, sleep_m_;
  std::condition_variable sleep_cv_;
  const std::vector<Step>* steps_ = nullptr;
  uint64_t epoch_ = 0;  // written by the caller only
  std::atomic<uint64_t> cur_{static_cast<uint64_t>(kIdle)};
  std::atomic<uint64_t> claim_{0};
  std::atomic<int64_t> done_{0};
  std::atomic<int> inside_{0}, sleepers_{0};
  std::atomic<bool> stop_{false};
};

// One pool per thread count, created on first use and kept for the process (its workers sleep
// when idle). A forked child has none of the parent's threads: it starts with fresh pools.
std::mutex* g_pools_m = new std::mutex;
std::map<int, Pool*>* g_pools = new std::map<int, Pool*>;
void reset_pools_in_child() {
  g_pools_m = new std::mutex;           // the parent's may have been held by another thread
  g_pools = new std::map<int, Pool*>;   // the parent's pools are leaked: no threads behind them
}

// SPARSE_POSE_SPIN_US: microseconds a worker keeps spinning after a frame (default 1000: covers
// the gap between the backbone and the head and back-to-back frames; a camera frame 33 ms later
// finds it asleep and runs on the caller). 40000 keeps workers hot at 30 fps the way ONNX
// Runtime does by default, at the price of a busy core.
int64_t idle_spin_us() {
  const char* env = std::getenv("SPARSE_POSE_SPIN_US");
  if (env == nullptr || *env == '\0') return 1000;
  char* end = nullptr;
  const long long v = std::strtoll(env, &end, 10);
  return (end != nullptr && *end == '\0' && v >= 0) ? static_cast<int64_t>(v) : 1000;
}

Pool& pool_for(int64_t threads) {
  static const int registered = pthread_atfork(nullptr, nullptr, reset_pools_in_child);
  (void)registered;
  const int t = static_cast<int>(std::max<int64_t>(1, threads));
  std::lock_guard<std::mutex> lk(*g_pools_m);
  Pool*& p = (*g_pools)[t];
  if (p == nullptr) p = new Pool(t, idle_spin_us());
  return *p;
}

}  // namespace

void run_steps(int64_t threads, const std::vector<Step>& steps, int64_t* done_at,
               int64_t linger_us) {
  pool_for(threads).run(steps, done_at, linger_us);
}

void prewake(int64_t threads, int64_t spin_us) { pool_for(threads).prewake(spin_us); }

int64_t worker_chunks(int64_t threads) {
  return pool_for(threads).worker_chunks_.load(std::memory_order_relaxed);
}

}  // namespace spr_cpu
