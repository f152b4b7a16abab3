# The one native addon: libdeflate's compressor for stored segments and its decompressor for small
# gzip bodies (native/libdeflate-addon.c).
# npm builds it with node-gyp on `npm ci` (a binding.gyp at the root is the default install step).
{
  "targets": [
    {
      "target_name": "s3dedup_deflate",
      "sources": [
        "native/libdeflate-addon.c",
        "native/libdeflate/lib/deflate_compress.c",
        "native/libdeflate/lib/deflate_decompress.c",
        "native/libdeflate/lib/utils.c",
        "native/libdeflate/lib/x86/cpu_features.c",
        "native/libdeflate/lib/arm/cpu_features.c"
      ],
      "include_dirs": ["native"],
      "defines": ["LIBDEFLATE_NEVER_FINAL", "NDEBUG"],
      "cflags": ["-O2", "-std=gnu11", "-Wno-sign-compare"],
      "xcode_settings": { "OTHER_CFLAGS": ["-O2", "-std=gnu11"] },
      "msvs_settings": { "VCCLCompilerTool": { "Optimization": 2 } }
    }
  ]
}
