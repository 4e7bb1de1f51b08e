// Reading and checking JS arguments. Every check throws sophia::Error with a code and a message
// naming the argument, what was expected and what came, before any kernel runs.
#pragma once
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "sophia/common.h"

namespace sophia::addon {

std::string describe(const Napi::Value& v);

[[noreturn]] inline void fail(const char* code, const std::string& msg) { throw Error(code, msg); }

// Where an array argument lives.
struct View {
  void* data = nullptr;
  int64_t length = 0;  // elements
  bool onDevice = false;
  bool present = false;
  Napi::Object holder;  // keeps the JS object alive for async work
};

class Args {
 public:
  Args(const Napi::CallbackInfo& info, const char* fn);
  // A nested options object (fn names it, e.g. "Model: config").
  Args(const Napi::Value& v, const char* fn);
  const char* fn;
  Napi::Object obj;

  bool has(const char* key) const;
  Napi::Value get(const char* key) const { return obj.Get(key); }

  double number(const char* key, double def, double lo, double hi, bool loOpen = false) const;
  double requiredNumber(const char* key, double lo, double hi) const;
  int64_t integer(const char* key, int64_t def, int64_t lo, int64_t hi) const;
  bool boolean(const char* key, bool def) const;
  std::string oneOf(const char* key, const char* def, std::initializer_list<const char*> allowed) const;

  // A typed array of exactly this JS type (or a DeviceBuffer when allowDevice). Absent and not
  // required: present = false.
  View array(const char* key, napi_typedarray_type type, bool required, bool allowDevice = false) const;
  // Float32Array or Uint8Array (masks).
  View mask(const char* key, bool* isFloat, bool copy = false) const;
  // Like array(), but the data is copied into memory this call owns (see `owned`): for the small
  // inputs (labels, offsets, masks, advantages, token ids) of async work, which the caller may change
  // or free while the work runs. Checks made after this read the copy.
  View copy(const char* key, napi_typedarray_type type, bool required) const;
  // The copies made by copy(): hand them to run() so they live as long as the work.
  mutable std::vector<std::shared_ptr<void>> owned;

  std::string name(const char* key) const { return std::string(fn) + ": " + key; }
};

const char* typed_name(napi_typedarray_type t);
bool is_device_buffer(Napi::Env env, const Napi::Value& v);
View device_view(const Napi::Value& v);

}  // namespace sophia::addon
