{
  "targets": [{
    "target_name": "sluice_bpf",
    "sources": ["src/addon.cc"],
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
    # Handlers validate their arguments, so a JS exception is never pending when they throw; should
    # one slip through, the second throw is dropped rather than aborting the whole agent.
    "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"],
    "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-unused-parameter"],
    "libraries": ["-lbpf"]
  }]
}
