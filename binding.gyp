{
  "targets": [
    {
      "target_name": "autoglm_native",
      "sources": [
        "native/addon.cc",
        "native/bindings2.cc",
        "native/elementwise.cc",
        "native/gelu512.cc",
        "native/broadcast.cc",
        "native/reduce.cc",
        "native/nn.cc",
        "native/matmul.cc",
        "native/nf4.cc",
        "native/skinny.cc",
        "native/optim.cc",
        "native/attention.cc",
        "native/attention_bf16.cc",
        "native/attention_amx.cc",
        "native/lora.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "native"
      ],
      "defines": ["NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-O3", "-march=x86-64-v3", "-fopenmp", "-fno-math-errno", "-Wno-unused-function"],
      "ldflags": [
        "-fopenmp",
        "-L/usr/lib/x86_64-linux-gnu/openblas-openmp",
        "-Wl,-rpath,/usr/lib/x86_64-linux-gnu/openblas-openmp",
        "-Wl,--disable-new-dtags"
      ],
      "libraries": [
        "-l:libopenblas.so.0",
        "-ldnnl",
        "-lgomp"
      ]
    }
  ],
  "variables": {
    "autoglm_gloo%": "<!(node -p \"process.env.AUTOGLM_GLOO === '0' ? 0 : +require('fs').existsSync('/usr/include/gloo/rendezvous/redis_store.h')\")"
  },
  "conditions": [
    ["autoglm_gloo==1", {
      "targets": [
        {
          "target_name": "autoglm_gloo",
          "sources": ["native/gloo/gloo.cc"],
          "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
          "defines": ["NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED", "HIREDIS_NESTED_INCLUDE"],
          "cflags!": ["-fno-exceptions"],
          "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
          "cflags_cc": ["-std=c++17", "-fexceptions", "-O3"],
          "ldflags": ["-pthread"],
          "libraries": ["-lgloo"]
        }
      ]
    }]
  ]
}
