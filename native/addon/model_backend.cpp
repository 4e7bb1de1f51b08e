// The two ModelBackend implementations (see model_backend.h).
#include "model_backend.h"

#include <cstring>

#include "../cpu/model.h"
#ifdef SOPHIA_WITH_CUDA
#include "../cuda/model.cuh"
#include "sophia/cuda.h"
#endif

namespace sophia::addon {

namespace {

// Everything both backends do the same way, given the model type.
template <class M>
class Common : public ModelBackend {
 public:
  Common(const model::Config& c, uint64_t seed) : m_(c, seed) {}
  const model::Config& config() const override { return m_.config(); }
  const std::vector<model::TensorInfo>& tensors() const override { return m_.tensors(); }
  int64_t numParams() const override { return m_.numParams(); }
  int64_t& adamStep() override { return m_.adamStep(); }
  int64_t bytesAllocated() const override { return m_.bytesAllocated(); }
  bool hasForward() const override { return m_.hasForward(); }
  void zeroGrad() override { m_.zeroGrad(); }
  model::StepResult step(const model::AdamW& o) override { return m_.step(o); }
  void generate(const model::Generate& g) override { m_.generate(g); }

 protected:
  // Floats of the forward output for this batch: logits [M, V] or one score per sequence.
  int64_t outFloats(const model::Batch& b) const { return m_.config().rewardHead ? b.B : b.M * m_.config().vocab; }
  float* state(const std::string& which) {
    if (which == "params") return m_.params();
    if (which == "grads") return m_.grads();
    if (which == "adamM") return m_.adamM();
    if (which == "adamV") return m_.adamV();
    throw Error("E_INTERNAL", "no model state buffer named " + which);
  }
  M m_;
};

class CpuModel final : public Common<cpu::Model> {
 public:
  using Common::Common;
  const char* device() const override { return "cpu"; }
  void forward(const model::Batch& b, float* out, float* scoreLogits) override { m_.forward(b, out, scoreLogits); }
  void backward(const float* dout, int64_t) override { m_.backward(dout); }
  void copyState(const std::string& which, float* out) override {
    std::memcpy(out, state(which), sizeof(float) * size_t(numParams()));
  }
  void setState(const std::string& which, const float* data) override {
    std::memcpy(state(which), data, sizeof(float) * size_t(numParams()));
  }
};

#ifdef SOPHIA_WITH_CUDA
class CudaModel final : public Common<cuda::Model> {
 public:
  using Common::Common;
  const char* device() const override { return "cuda"; }
  int64_t bytesAllocated() const override { return m_.bytesAllocated() + out_.bytes() + scoreLogits_.bytes(); }
  void forward(const model::Batch& b, float* out, float* scoreLogits) override {
    const int64_t n = outFloats(b);
    out_.reserve(4 * n);
    if (scoreLogits) scoreLogits_.reserve(4 * b.B);
    m_.forward(b, static_cast<float*>(out_.data()), scoreLogits ? static_cast<float*>(scoreLogits_.data()) : nullptr);
    cuda::copy_d2h(out, out_.data(), 4 * n);
    if (scoreLogits) cuda::copy_d2h(scoreLogits, scoreLogits_.data(), 4 * b.B);
  }
  void backward(const float* dout, int64_t n) override {
    // The forward's device output buffer (n floats) is free again once copied back: dout goes there.
    cuda::copy_h2d(out_.data(), dout, 4 * n);
    m_.backward(static_cast<const float*>(out_.data()));
  }
  void copyState(const std::string& which, float* out) override { m_.copyState(which, out); }
  void setState(const std::string& which, const float* data) override { m_.setState(which, data); }

 private:
  cuda::DeviceMemory out_, scoreLogits_;
};
#endif

}  // namespace

std::unique_ptr<ModelBackend> make_cpu_model(const model::Config& c, uint64_t seed) { return std::make_unique<CpuModel>(c, seed); }

std::unique_ptr<ModelBackend> make_cuda_model(const model::Config& c, uint64_t seed) {
#ifdef SOPHIA_WITH_CUDA
  const cuda::Status s = cuda::status();
  if (!s.usable) throw Error("E_DEVICE", "new Model: device 'cuda' asked for, but no GPU is usable: " + s.reason);
  return std::make_unique<CudaModel>(c, seed);
#else
  (void)c;
  (void)seed;
  throw Error("E_DEVICE",
              "new Model: device 'cuda' needs the CUDA-enabled binary; this is the CPU-only build (build one with "
              "`npm run build:native` on a machine with nvcc, and set SOPHIA_DEVICE=cuda)");
#endif
}

}  // namespace sophia::addon
