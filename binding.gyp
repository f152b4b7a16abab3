# The one native addon: libdeflate's compressor for stored segments (native/deflate-segment.c).
# npm builds it with node-gyp on `npm ci` (a binding.gyp at the root is the default install step).
{
  "targets": [
    {
      "target_name": "deflate_segment",
      "sources": [
        "native/deflate-segment.c",
        "native/libdeflate/lib/deflate_compress.c",
        "native/libdeflate/lib/utils.c"
      ],
      "include_dirs": ["native"],
      "defines": ["LIBDEFLATE_NEVER_FINAL", "NDEBUG"],
      "cflags": ["-O2", "-std=gnu11", "-Wno-sign-compare"],
      "xcode_settings": { "OTHER_CFLAGS": ["-O2", "-std=gnu11"] },
      "msvs_settings": { "VCCLCompilerTool": { "Optimization": 2 } }
    }
  ]
}
