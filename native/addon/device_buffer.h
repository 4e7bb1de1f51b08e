// DeviceBuffer: device memory owned by a JS object. Freed by free() (Tensor.dispose) or, as a
// fallback, when the JS object is collected.
#pragma once
#include <napi.h>

#include "args.h"

namespace sophia::addon {

class DeviceBuffer : public Napi::ObjectWrap<DeviceBuffer> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit DeviceBuffer(const Napi::CallbackInfo& info);
  ~DeviceBuffer() override;

  void* ptr() const { return ptr_; }
  int64_t bytes() const { return bytes_; }
  // Checked access for kernels: a freed buffer is an E_DISPOSED error, not a dangling pointer.
  void* live(const std::string& what) const;

 private:
  Napi::Value Free(const Napi::CallbackInfo& info);
  Napi::Value Bytes(const Napi::CallbackInfo& info);
  Napi::Value Disposed(const Napi::CallbackInfo& info);
  Napi::Value CopyFrom(const Napi::CallbackInfo& info);
  Napi::Value CopyTo(const Napi::CallbackInfo& info);
  void* ptr_ = nullptr;
  int64_t bytes_ = 0;
};

}  // namespace sophia::addon
