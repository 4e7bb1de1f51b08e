// The embedded model on the CPU (model.cpp): parameters, gradients and AdamW state in three flat
// buffers laid out by sophia::model::layout, activations kept from forward until backward.
#pragma once
#include <cstdint>
#include <vector>

#include "sophia/model.h"
#include "sophia/model_arena.h"

namespace sophia::cpu {

class Model {
 public:
  Model(const model::Config& c, uint64_t seed);

  const model::Config& config() const { return cfg_; }
  const std::vector<model::TensorInfo>& tensors() const { return layout_; }
  int64_t numParams() const { return int64_t(params_.size()); }
  float* params() { return params_.data(); }
  float* grads() { return grads_.data(); }
  float* adamM() { return m_.data(); }
  float* adamV() { return v_.data(); }
  int64_t& adamStep() { return step_; }
  int64_t bytesAllocated() const;

  // Runs the batch and keeps what backward needs. out: logits [M, V] (LM) or scores [B] in [0, 1]
  // (reward head; scoreLogits [B] gets the pre-sigmoid values when not null).
  void forward(const model::Batch& b, float* out, float* scoreLogits = nullptr);
  // Gradients of the last forward's batch: dout = d loss / d logits [M, V], or d loss / d score
  // logit [B] for the reward head. Adds into the gradient buffer.
  void backward(const float* dout);
  bool hasForward() const { return haveForward_; }
  void zeroGrad();
  model::StepResult step(const model::AdamW& o);
  void generate(const model::Generate& g);

 private:
  using BlockW = model::BlockW;
  using BlockG = model::BlockG;
  using BlockShape = model::BlockShape;
  using BlockA = model::BlockA;
  struct Stack {  // one tower (vision or decoder) for one batch
    BlockShape shape{};
    std::vector<BlockA> blocks;
    std::vector<int32_t> seq;
    std::vector<int64_t> probOff;
    std::vector<int32_t> pos;
    float* out = nullptr;  // [N, d], the last block's output
  };

  BlockW blockW(const std::string& prefix) const;
  BlockG blockG(const std::string& prefix);
  const float* w(const std::string& name) const;
  float* g(const std::string& name);
  void planStack(Stack& st, const BlockShape& s, int64_t L, const std::vector<int32_t>& seq, float* base, int64_t& used);
  void stackForward(Stack& st, const std::string& prefix, int64_t L, const float* x0);
  // dx: [N, d] gradient of the stack's output in, of its input out (in place).
  void stackBackward(Stack& st, const std::string& prefix, int64_t L, float* dx);
  void blockForward(const BlockW& W, BlockA& A, const BlockShape& s, const Stack& st, float* xout);
  void blockBackward(const BlockW& W, BlockG& G, const BlockA& A, const BlockShape& s, const Stack& st, float* dx);
  void mask_image_logit(float* logits, int64_t R) const;

  model::Config cfg_;
  std::vector<model::TensorInfo> layout_;
  std::vector<float> params_, grads_, m_, v_;
  int64_t step_ = 0;

  // The last forward's batch and activations.
  bool haveForward_ = false;
  std::vector<int32_t> tokens_, seq_, imageOf_, rows_, imgRow_;
  int64_t images_ = 0;
  std::vector<float> patches_;  // [images·np, patchDim]
  std::vector<float> arena_;
  Stack vis_, dec_;
  float *visEmb_ = nullptr, *visNorm_ = nullptr, *visRstd_ = nullptr, *visTok_ = nullptr;  // vision head
  float *x0_ = nullptr, *sel_ = nullptr, *selNorm_ = nullptr, *selRstd_ = nullptr;         // decoder ends
  std::vector<float> scratch_;
  float* blockScratch_ = nullptr;
  std::vector<float> maskedGrad_;
};

}  // namespace sophia::cpu
