// Per-environment state of the addon (one per Node thread that loads it).
#pragma once
#include <napi.h>

#include <string>

namespace sophia::addon {

struct State {
  Napi::FunctionReference errorClass;   // SophiaError from lib/errors.ts, once setErrorClass ran
  Napi::FunctionReference deviceBuffer; // the DeviceBuffer constructor
};

State& state(Napi::Env env);
Napi::Error make_error(Napi::Env env, const std::string& code, const std::string& message);

}  // namespace sophia::addon
