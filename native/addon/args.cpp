#include "args.h"

#include <cstring>

#include "device_buffer.h"

namespace sophia::addon {

std::string describe(const Napi::Value& v) {
  if (v.IsUndefined()) return "undefined";
  if (v.IsNull()) return "null";
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (std::isnan(d)) return "NaN";
    char buf[64];
    snprintf(buf, sizeof buf, "%.17g", d);
    return buf;
  }
  if (v.IsBoolean()) return v.As<Napi::Boolean>().Value() ? "true" : "false";
  if (v.IsString()) {
    std::string s = v.As<Napi::String>().Utf8Value();
    return s.size() > 40 ? "a string of length " + std::to_string(s.size()) : "\"" + s + "\"";
  }
  if (v.IsTypedArray()) {
    auto ta = v.As<Napi::TypedArray>();
    return std::string(typed_name(ta.TypedArrayType())) + "(" + std::to_string(ta.ElementLength()) + ")";
  }
  if (v.IsArray()) return "an array of length " + std::to_string(v.As<Napi::Array>().Length());
  if (v.IsFunction()) return "a function";
  if (v.IsBigInt()) return "a bigint";
  if (v.IsSymbol()) return "a symbol";
  if (is_device_buffer(v.Env(), v)) return "a DeviceBuffer";
  return "an object";
}

const char* typed_name(napi_typedarray_type t) {
  switch (t) {
    case napi_int8_array: return "Int8Array";
    case napi_uint8_array: return "Uint8Array";
    case napi_uint8_clamped_array: return "Uint8ClampedArray";
    case napi_int16_array: return "Int16Array";
    case napi_uint16_array: return "Uint16Array";
    case napi_int32_array: return "Int32Array";
    case napi_uint32_array: return "Uint32Array";
    case napi_float32_array: return "Float32Array";
    case napi_float64_array: return "Float64Array";
    case napi_bigint64_array: return "BigInt64Array";
    case napi_biguint64_array: return "BigUint64Array";
    default: break;
  }
  return "TypedArray";
}

Args::Args(const Napi::CallbackInfo& info, const char* f) : fn(f) {
  if (info.Length() < 1 || !info[0].IsObject() || info[0].IsArray() || info[0].IsTypedArray() ||
      info[0].IsFunction()) {
    fail("E_TYPE", std::string(fn) + ": expected an options object as the first argument, got " +
                       (info.Length() < 1 ? std::string("nothing") : describe(info[0])));
  }
  obj = info[0].As<Napi::Object>();
}

Args::Args(const Napi::Value& v, const char* f) : fn(f) {
  if (!v.IsObject() || v.IsArray() || v.IsTypedArray() || v.IsFunction())
    fail("E_TYPE", std::string(fn) + " must be an options object, got " + describe(v));
  obj = v.As<Napi::Object>();
}

bool Args::has(const char* key) const {
  Napi::Value v = obj.Get(key);
  return !v.IsUndefined() && !v.IsNull();
}

double Args::number(const char* key, double def, double lo, double hi, bool loOpen) const {
  Napi::Value v = obj.Get(key);
  if (v.IsUndefined() || v.IsNull()) return def;
  if (!v.IsNumber()) fail("E_TYPE", name(key) + " must be a number, got " + describe(v));
  double d = v.As<Napi::Number>().DoubleValue();
  bool below = loOpen ? !(d > lo) : !(d >= lo);
  if (std::isnan(d) || below || d > hi) {
    char range[96];
    snprintf(range, sizeof range, "%s%.9g, %.9g]", loOpen ? "(" : "[", lo, hi);
    fail("E_RANGE", name(key) + " must be a finite number in " + range + ", got " + describe(v));
  }
  return d;
}

double Args::requiredNumber(const char* key, double lo, double hi) const {
  if (!has(key)) fail("E_CONFIG", name(key) + " is required (a number in [" + std::to_string(lo) + ", " +
                                      std::to_string(hi) + "]), got " + describe(obj.Get(key)));
  return number(key, 0, lo, hi);
}

int64_t Args::integer(const char* key, int64_t def, int64_t lo, int64_t hi) const {
  Napi::Value v = obj.Get(key);
  if (v.IsUndefined() || v.IsNull()) return def;
  if (!v.IsNumber()) fail("E_TYPE", name(key) + " must be an integer, got " + describe(v));
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d == std::floor(d)) || d < double(lo) || d > double(hi))
    fail("E_RANGE", name(key) + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                        "], got " + describe(v));
  return int64_t(d);
}

bool Args::boolean(const char* key, bool def) const {
  Napi::Value v = obj.Get(key);
  if (v.IsUndefined() || v.IsNull()) return def;
  if (!v.IsBoolean()) fail("E_TYPE", name(key) + " must be a boolean, got " + describe(v));
  return v.As<Napi::Boolean>().Value();
}

std::string Args::oneOf(const char* key, const char* def, std::initializer_list<const char*> allowed) const {
  Napi::Value v = obj.Get(key);
  std::string list;
  for (const char* a : allowed) list += (list.empty() ? "'" : ", '") + std::string(a) + "'";
  if (v.IsUndefined() || v.IsNull()) return def;
  if (!v.IsString()) fail("E_TYPE", name(key) + " must be one of " + list + ", got " + describe(v));
  std::string s = v.As<Napi::String>().Utf8Value();
  for (const char* a : allowed)
    if (s == a) return s;
  fail("E_CONFIG", name(key) + " must be one of " + list + ", got " + describe(v));
}

// Bytes per element of the typed arrays arguments use.
static int64_t elem_bytes(napi_typedarray_type type) {
  return type == napi_float32_array || type == napi_int32_array ? 4 : type == napi_uint16_array ? 2 : 1;
}

View Args::array(const char* key, napi_typedarray_type type, bool required, bool allowDevice) const {
  View view;
  Napi::Value v = obj.Get(key);
  if (v.IsUndefined() || v.IsNull()) {
    if (required) fail("E_CONFIG", name(key) + " is required: expected a " + typed_name(type) + ", got " + describe(v));
    return view;
  }
  if (allowDevice && is_device_buffer(obj.Env(), v)) {
    view = device_view(v);
    const int64_t elem = elem_bytes(type);
    view.length /= elem;
    return view;
  }
  if (!v.IsTypedArray())
    fail("E_TYPE", name(key) + " must be a " + typed_name(type) + (allowDevice ? " or a DeviceBuffer" : "") + ", got " +
                       describe(v));
  auto ta = v.As<Napi::TypedArray>();
  if (ta.TypedArrayType() != type)
    fail("E_DTYPE", name(key) + " must be a " + typed_name(type) + ", got " + describe(v));
  // A SharedArrayBuffer can change under the kernel from another thread at any moment.
  if (!ta.Get("buffer").IsArrayBuffer())
    fail("E_TYPE", name(key) + " is backed by a SharedArrayBuffer; pass a " + std::string(typed_name(type)) + " on an ordinary ArrayBuffer (copy it with .slice())");
  Napi::ArrayBuffer buf = ta.ArrayBuffer();
  if (buf.ByteLength() > 0 && buf.Data() == nullptr) fail("E_TYPE", name(key) + " has a detached buffer");
  view.data = static_cast<uint8_t*>(buf.Data()) + ta.ByteOffset();
  view.length = int64_t(ta.ElementLength());
  view.present = true;
  view.holder = ta;
  return view;
}

View Args::copy(const char* key, napi_typedarray_type type, bool required) const {
  View view = array(key, type, required);
  if (!view.present || view.onDevice) return view;
  const size_t bytes = size_t(view.length) * size_t(elem_bytes(type));
  auto store = std::make_shared<std::vector<uint8_t>>(bytes);
  if (bytes) std::memcpy(store->data(), view.data, bytes);
  view.data = store->data();
  owned.push_back(store);
  return view;
}

View Args::mask(const char* key, bool* isFloat, bool copyIt) const {
  Napi::Value v = obj.Get(key);
  *isFloat = false;
  if (v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_float32_array) {
    *isFloat = true;
    return copyIt ? copy(key, napi_float32_array, false) : array(key, napi_float32_array, false);
  }
  if (v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    fail("E_DTYPE", name(key) + " must be a Uint8Array (0/1) or a Float32Array (weights >= 0), got " + describe(v));
  if (!v.IsUndefined() && !v.IsNull() && !v.IsTypedArray())
    fail("E_TYPE", name(key) + " must be a Uint8Array (0/1) or a Float32Array (weights >= 0), got " + describe(v));
  return copyIt ? copy(key, napi_uint8_array, false) : array(key, napi_uint8_array, false);
}

}  // namespace sophia::addon
