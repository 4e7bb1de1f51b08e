{
  "targets": [
    {
      "target_name": "sophia_rl",
      "sources": [
        "native/addon/addon.cpp",
        "native/addon/args.cpp",
        "native/addon/device_buffer.cpp",
        "native/addon/model_backend.cpp",
        "native/addon/model_wrap.cpp",
        "native/cpu/threadpool.cpp",
        "native/cpu/kernels.cpp",
        "native/cpu/rows_base.cpp",
        "native/cpu/rows_avx2.cpp",
        "native/cpu/rows_avx512.cpp",
        "native/cpu/trust.cpp",
        "native/cpu/advantages.cpp",
        "native/cpu/nn.cpp",
        "native/cpu/model.cpp"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "native/include"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_CPP_EXCEPTIONS",
        "SOPHIA_VERSION=\"<!(node -p \"require('./package.json').version\")\""
      ],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-O3", "-fno-trapping-math", "-fno-math-errno", "-ffp-contract=fast", "-fexceptions"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
        "OTHER_CPLUSPLUSFLAGS": ["-O3", "-fno-trapping-math", "-fno-math-errno", "-ffp-contract=fast"]
      }
    }
  ]
}
