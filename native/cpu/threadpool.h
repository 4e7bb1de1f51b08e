// A fixed pool of worker threads, created once and reused by every kernel call.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace sophia::cpu {

class ThreadPool {
 public:
  static ThreadPool& instance();
  // Calls fn(begin, end) over [0, n) in chunks of `grain`, on every worker and the caller,
  // and returns when all chunks are done. Concurrent callers (several AsyncWorkers) take turns.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);
  int size() const { return int(workers_.size()) + 1; }
  ~ThreadPool();

 private:
  explicit ThreadPool(int threads);
  void work();
  void loop();

  std::vector<std::thread> workers_;
  std::mutex callerMutex_;  // one job at a time
  std::mutex m_;
  std::condition_variable wake_, done_;
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t n_ = 0, grain_ = 1, next_ = 0;
  uint64_t generation_ = 0;
  int active_ = 0;
  bool stop_ = false;
};

}  // namespace sophia::cpu
