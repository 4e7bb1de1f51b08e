#include "device_buffer.h"

#include "addon_state.h"
#ifdef SOPHIA_WITH_CUDA
#include "sophia/cuda.h"
#endif

namespace sophia::addon {

Napi::Function DeviceBuffer::Define(Napi::Env env) {
  return DefineClass(env, "DeviceBuffer",
                     {InstanceMethod("free", &DeviceBuffer::Free), InstanceAccessor("bytes", &DeviceBuffer::Bytes, nullptr),
                      InstanceAccessor("disposed", &DeviceBuffer::Disposed, nullptr),
                      InstanceMethod("copyFrom", &DeviceBuffer::CopyFrom), InstanceMethod("copyTo", &DeviceBuffer::CopyTo)});
}

bool is_device_buffer(Napi::Env env, const Napi::Value& v) {
  if (!v.IsObject()) return false;
  Napi::FunctionReference& ctor = state(env).deviceBuffer;
  return !ctor.IsEmpty() && v.As<Napi::Object>().InstanceOf(ctor.Value());
}

View device_view(const Napi::Value& v) {
  DeviceBuffer* b = DeviceBuffer::Unwrap(v.As<Napi::Object>());
  View view;
  view.data = b->live("a DeviceBuffer argument");
  view.length = b->bytes();
  view.onDevice = true;
  view.present = true;
  view.holder = v.As<Napi::Object>();
  return view;
}

// new DeviceBuffer(bytes): device memory, uninitialised.
DeviceBuffer::DeviceBuffer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DeviceBuffer>(info) {
  try {
    if (info.Length() < 1 || !info[0].IsNumber())
      fail("E_TYPE", "DeviceBuffer: bytes must be a number, got " + (info.Length() ? describe(info[0]) : std::string("nothing")));
    double d = info[0].As<Napi::Number>().DoubleValue();
    if (!(d >= 0 && d <= 9.0e15 && d == double(int64_t(d))))
      fail("E_RANGE", "DeviceBuffer: bytes must be a non-negative integer, got " + describe(info[0]));
#ifdef SOPHIA_WITH_CUDA
    bytes_ = int64_t(d);
    ptr_ = bytes_ > 0 ? cuda::alloc(bytes_) : nullptr;
#else
    fail("E_DEVICE", "DeviceBuffer: this is the CPU-only build of sophia-rl; device memory needs the CUDA-enabled binary");
#endif
  } catch (const Error& e) {
    make_error(info.Env(), e.code, e.what()).ThrowAsJavaScriptException();
  }
}

DeviceBuffer::~DeviceBuffer() {
#ifdef SOPHIA_WITH_CUDA
  if (ptr_) cuda::release(ptr_);
#endif
}

void* DeviceBuffer::live(const std::string& what) const {
  if (bytes_ < 0) fail("E_DISPOSED", what + " was disposed; its device memory is gone");
  return ptr_;
}

Napi::Value DeviceBuffer::Free(const Napi::CallbackInfo& info) {
#ifdef SOPHIA_WITH_CUDA
  if (ptr_) cuda::release(ptr_);
#endif
  ptr_ = nullptr;
  bytes_ = -1;
  return info.Env().Undefined();
}

Napi::Value DeviceBuffer::Bytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(bytes_ < 0 ? 0 : bytes_));
}
Napi::Value DeviceBuffer::Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), bytes_ < 0); }

// copyFrom(typedArray) / copyTo(typedArray): whole-buffer copies; byte lengths must match.
static void* host_bytes(const Napi::CallbackInfo& info, const char* fn, int64_t expect) {
  if (info.Length() < 1 || !info[0].IsTypedArray())
    fail("E_TYPE", std::string(fn) + ": expected a typed array, got " + (info.Length() ? describe(info[0]) : std::string("nothing")));
  auto ta = info[0].As<Napi::TypedArray>();
  int64_t bytes = int64_t(ta.ByteLength());
  if (bytes != expect)
    fail("E_SHAPE", std::string(fn) + ": the typed array has " + std::to_string(bytes) + " bytes, the device buffer " +
                        std::to_string(expect));
  return static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
}

// Both directions share the checks; only the copy differs.
static void copy_whole(const Napi::CallbackInfo& info, DeviceBuffer& b, bool toDevice) {
  const char* fn = toDevice ? "DeviceBuffer.copyFrom" : "DeviceBuffer.copyTo";
  try {
    void* dev = b.live(std::string(fn) + ": the buffer");
    void* host = host_bytes(info, fn, b.bytes());
#ifdef SOPHIA_WITH_CUDA
    if (b.bytes() > 0) toDevice ? cuda::copy_h2d(dev, host, b.bytes()) : cuda::copy_d2h(host, dev, b.bytes());
#else
    (void)dev, (void)host;
#endif
  } catch (const Error& e) {
    make_error(info.Env(), e.code, e.what()).ThrowAsJavaScriptException();
  }
}

Napi::Value DeviceBuffer::CopyFrom(const Napi::CallbackInfo& info) {
  copy_whole(info, *this, true);
  return info.Env().Undefined();
}

Napi::Value DeviceBuffer::CopyTo(const Napi::CallbackInfo& info) {
  copy_whole(info, *this, false);
  return info.Env().Undefined();
}

}  // namespace sophia::addon
