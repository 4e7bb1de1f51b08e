// Per-environment state of the addon (one per Node thread that loads it).
#pragma once
#include <napi.h>

#include <memory>

#include <functional>
#include <string>
#include <vector>

namespace sophia::addon {

struct State {
  Napi::FunctionReference errorClass;   // SophiaError from lib/errors.ts, once setErrorClass ran
  Napi::FunctionReference deviceBuffer; // the DeviceBuffer constructor
};

State& state(Napi::Env env);
Napi::Error make_error(Napi::Env env, const std::string& code, const std::string& message);
// Runs `work` now (sync) or on the libuv pool (async: returns a Promise); `done` builds the result
// on the JS thread. The JS objects in `keep` stay alive until then. `settle` runs on the JS thread
// once the work is over, whether it succeeded or not, before the promise settles.
// `owned` (copies of small inputs, Args::owned) lives until the work is over.
Napi::Value run(Napi::Env env, bool async, std::function<void()> work, std::function<Napi::Value(Napi::Env)> done,
                const std::vector<Napi::Object>& keep, std::function<void()> settle = nullptr,
                std::vector<std::shared_ptr<void>> owned = {});

}  // namespace sophia::addon
