#include "threadpool.h"

#include <algorithm>
#include <cstdlib>

namespace sophia::cpu {

static int configured_threads() {
  if (const char* env = std::getenv("SOPHIA_NUM_THREADS")) {
    int v = std::atoi(env);
    if (v > 0) return std::min(v, 1024);
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : int(hw);
}

ThreadPool& ThreadPool::instance() {
  static ThreadPool pool(configured_threads());
  return pool;
}

ThreadPool::ThreadPool(int threads) {
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(m_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

// Chunks are claimed under the lock: kernels use grains of many rows, so contention is negligible.
// The function is read with the chunk, under the same lock: a worker that woke for a job that has
// since finished (job_ reset, or already replaced by the next job) must run the current job's
// function on the current job's range, never a stale or null one.
void ThreadPool::work() {
  for (;;) {
    int64_t begin, end;
    const std::function<void(int64_t, int64_t)>* fn;
    {
      std::lock_guard<std::mutex> lk(m_);
      if (job_ == nullptr || next_ >= n_) return;
      fn = job_;
      begin = next_;
      end = std::min(n_, begin + grain_);
      next_ = end;
    }
    (*fn)(begin, end);
  }
}

void ThreadPool::loop() {
  uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(m_);
      wake_.wait(lk, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      ++active_;
    }
    work();
    {
      std::lock_guard<std::mutex> lk(m_);
      if (--active_ == 0) done_.notify_all();
    }
  }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  if (workers_.empty() || n <= grain) {
    fn(0, n);
    return;
  }
  std::lock_guard<std::mutex> caller(callerMutex_);
  {
    std::lock_guard<std::mutex> lk(m_);
    job_ = &fn;
    n_ = n;
    grain_ = grain;
    next_ = 0;
    ++generation_;
  }
  wake_.notify_all();
  work();
  std::unique_lock<std::mutex> lk(m_);
  // Workers that woke late find no chunk left and leave at once; wait for those still running.
  done_.wait(lk, [&] { return active_ == 0 && next_ >= n_; });
  job_ = nullptr;
}

}  // namespace sophia::cpu
