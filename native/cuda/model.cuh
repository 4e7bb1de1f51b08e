// The embedded model on the GPU (model.cu): the interface of cpu::Model with parameters, gradients,
// AdamW state and activations in device memory. Plain C++ (no CUDA headers), so the addon's .cpp
// files can include it.
//
// Pointers: the Batch and Generate structs hold HOST pointers, as for the CPU model. forward's
// `out` and `scoreLogits` and backward's `dout` are DEVICE pointers (the loss kernels run on the
// device). params()/grads()/adamM()/adamV() are device pointers; copyState/setState move a whole
// buffer to or from the host. Every call runs on the legacy default stream and returns when its
// work is done (errors surface as sophia::Error from the call that caused them).
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "sophia/model.h"
#include "sophia/model_arena.h"

namespace sophia::cuda {

// An owned device allocation (cudaMalloc / cudaFree); contents are not kept when it grows.
class DeviceMemory {
 public:
  DeviceMemory() = default;
  ~DeviceMemory();
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
  void reserve(int64_t bytes);  // at least `bytes`; frees and reallocates when smaller
  void release();
  void* data() const { return p_; }
  int64_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  int64_t bytes_ = 0;
};

class Model {
 public:
  // Initial parameters are bit-identical to cpu::Model(c, seed) (model::init_params, on the host).
  // Lives on the device current at construction; every call makes it current on the calling thread
  // (the addon's async workers run on other threads).
  Model(const model::Config& c, uint64_t seed);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const model::Config& config() const { return cfg_; }
  const std::vector<model::TensorInfo>& tensors() const { return layout_; }
  int64_t numParams() const { return n_; }
  float* params() { return params_; }  // device
  float* grads() { return grads_; }    // device
  float* adamM() { return m_; }        // device
  float* adamV() { return v_; }        // device
  int64_t& adamStep() { return step_; }
  // Device bytes held now (state, activations, scratch, indices, workspace).
  int64_t bytesAllocated() const;
  // which: "params", "grads", "adamM" or "adamV"; host buffers of numParams() floats.
  void copyState(const std::string& which, float* host) const;
  void setState(const std::string& which, const float* host);

  // out (device): logits [M, V] (LM; the <image> column is -inf when there is a vision tower) or
  // scores [B] in [0, 1] (reward head; scoreLogits (device) [B] gets the pre-sigmoid values when not
  // null). The batch is checked on the host first (token ids, sequence starts, rows, images):
  // E_RANGE instead of a device fault.
  void forward(const model::Batch& b, float* out, float* scoreLogits = nullptr);
  // dout (device): d loss / d logits [M, V] (its <image> column is ignored), or d loss / d score
  // logit [B]. Adds into grads().
  void backward(const float* dout);
  bool hasForward() const { return haveForward_; }
  void zeroGrad();
  model::StepResult step(const model::AdamW& o);
  // All pointers in g are host pointers. Logits come back to the host each step and are sampled
  // there by the CPU's sampler (sophia/sampling.h): same seed and equal logits, same tokens.
  void generate(const model::Generate& g);

 private:
  using BlockW = model::BlockW;
  using BlockG = model::BlockG;
  using BlockShape = model::BlockShape;
  using BlockA = model::BlockA;  // device views into the arena
  struct Stack {
    BlockShape shape{};
    std::vector<BlockA> blocks;
    std::vector<int32_t> seq, pos;  // host
    std::vector<int64_t> probOff;   // host
    const int32_t* dSeq = nullptr;  // device copies
    const int32_t* dPos = nullptr;
    const int64_t* dProbOff = nullptr;
    float* out = nullptr;
  };
  // Row gathers with a fixed order: target t sums src rows order[start[t] .. start[t+1]).
  struct Segments {
    std::vector<int32_t> target, start, order;
    const int32_t *dTarget = nullptr, *dStart = nullptr, *dOrder = nullptr;
  };

  const float* w(const std::string& name) const;
  float* g(const std::string& name);
  BlockW blockW(const std::string& prefix) const;
  BlockG blockG(const std::string& prefix);
  void planStack(Stack& st, const BlockShape& s, int64_t L, const std::vector<int32_t>& seq, float* arena, int64_t& used);
  void stackForward(Stack& st, const std::string& prefix, int64_t L, const float* x0);
  void stackBackward(Stack& st, const std::string& prefix, int64_t L, float* dx);
  void blockForward(const BlockW& W, BlockA& A, const BlockShape& s, const Stack& st, float* xout);
  void blockBackward(const BlockW& W, BlockG& G, const BlockA& A, const BlockShape& s, const Stack& st, float* dx);
  void checkBatch(const model::Batch& b) const;
  // The LM head never predicts <image>: its logit is -inf (device logits [R, V]), as on the CPU.
  void maskImageLogit(float* logits, int64_t R) const;
  void sync() const;
  void bind() const;  // cudaSetDevice(device_)

  model::Config cfg_;
  std::vector<model::TensorInfo> layout_;
  std::unordered_map<std::string, int64_t> offset_;
  int64_t n_ = 0;
  int64_t step_ = 0;
  int device_ = 0;
  DeviceMemory state_;  // params, grads, m, v
  float *params_ = nullptr, *grads_ = nullptr, *m_ = nullptr, *v_ = nullptr;
  DeviceMemory work_;   // the nn workspace (split-K and chunked column sums)
  DeviceMemory arena_, scratch_, index_, norms_;

  bool haveForward_ = false;
  std::vector<int32_t> tokens_, seq_, imageOf_, rows_, imgRow_;
  int64_t images_ = 0;
  const int32_t* dRows_ = nullptr;
  Segments embSeg_, visSeg_;  // token embedding rows and visual-token rows fed by the batch rows
  Stack vis_, dec_;
  float *patches_ = nullptr, *visEmb_ = nullptr, *visNorm_ = nullptr, *visRstd_ = nullptr, *visTok_ = nullptr;
  float *x0_ = nullptr, *sel_ = nullptr, *selNorm_ = nullptr, *selRstd_ = nullptr;
  float* blockScratch_ = nullptr;
};

}  // namespace sophia::cuda
