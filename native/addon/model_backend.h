// The embedded model behind one interface, on the CPU (cpu::Model) or a GPU (cuda::Model), so the
// addon's Model class validates arguments once and runs either. Every pointer here is a HOST
// pointer: the GPU backend stages the logits / their gradient through device buffers it owns
// (forward copies `out` back, backward copies `dout` in), which for this model's vocabulary is a
// few hundred KB a step against milliseconds of compute.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "sophia/model.h"

namespace sophia::addon {

class ModelBackend {
 public:
  virtual ~ModelBackend() = default;
  virtual const char* device() const = 0;  // "cpu" or "cuda"
  virtual const model::Config& config() const = 0;
  virtual const std::vector<model::TensorInfo>& tensors() const = 0;
  virtual int64_t numParams() const = 0;
  virtual int64_t& adamStep() = 0;
  // Bytes held now: host bytes for the CPU, device bytes for the GPU.
  virtual int64_t bytesAllocated() const = 0;
  virtual bool hasForward() const = 0;
  // out: logits [M, V] or scores [B]; scoreLogits [B] or null (reward head).
  virtual void forward(const model::Batch& b, float* out, float* scoreLogits) = 0;
  // dout: n floats, as many as the last forward's out (the caller checks).
  virtual void backward(const float* dout, int64_t n) = 0;
  virtual void zeroGrad() = 0;
  virtual model::StepResult step(const model::AdamW& o) = 0;
  virtual void generate(const model::Generate& g) = 0;
  // which: "params", "grads", "adamM" or "adamV"; numParams() floats.
  virtual void copyState(const std::string& which, float* out) = 0;
  virtual void setState(const std::string& which, const float* data) = 0;
};

std::unique_ptr<ModelBackend> make_cpu_model(const model::Config& c, uint64_t seed);
// Throws E_DEVICE, with the reason, in the CPU-only binary or where no GPU is usable.
std::unique_ptr<ModelBackend> make_cuda_model(const model::Config& c, uint64_t seed);

}  // namespace sophia::addon
