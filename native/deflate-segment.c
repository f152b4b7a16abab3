// Node-API binding of libdeflate's compressor (native/libdeflate, built with LIBDEFLATE_NEVER_FINAL)
// for the stored segments of src/store/segment.ts: raw deflate that ends in a sync flush, so that
// segments concatenate into one stream. libdeflate compresses about 1.7x as fast as zlib at the
// same level and ratio (bench/README.md, "The deflate implementation").
//
//   bound(length) -> the output size compress() needs for an input of `length` bytes
//   compress(input, output, level) -> Promise<number>, the bytes written to `output`
//
// compress() runs on the libuv thread pool, so several blocks compress in parallel while the event
// loop goes on; the caller keeps both buffers alive and unchanged until the promise settles (the
// binding also holds a reference to each).
#define NAPI_VERSION 8
#include <node_api.h>
#include <stdint.h>
#include <stdlib.h>

#include "libdeflate/libdeflate.h"

#define MAX_LEVEL 12
// libdeflate writes inputs this short (55 - 4 * level bytes at most) as stored blocks without the
// patched ending, whose last block is final; they are refused, and the caller stores them itself.
#define MIN_INPUT 64
// The empty stored block the patched compressor appends after its last block.
#define SYNC_FLUSH_BYTES 6

// One compressor per level per pool thread: a compressor is not thread-safe, and allocating
// one (a few hundred KiB of match-finder tables) per block would cost more than small blocks.
static _Thread_local struct libdeflate_compressor *compressors[MAX_LEVEL + 1];

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref input_ref, output_ref;
  const uint8_t *in;
  size_t in_len;
  uint8_t *out;
  size_t out_len;
  int level;
  size_t written;
  const char *error;
} job_t;

static size_t bound_of(size_t length) {
  return libdeflate_deflate_compress_bound(NULL, length) + SYNC_FLUSH_BYTES;
}

static void execute(napi_env env, void *data) {
  (void)env;
  job_t *job = data;
  struct libdeflate_compressor *c = compressors[job->level];
  if (c == NULL) c = compressors[job->level] = libdeflate_alloc_compressor(job->level);
  if (c == NULL) {
    job->error = "libdeflate: out of memory allocating a compressor";
    return;
  }
  job->written = libdeflate_deflate_compress(c, job->in, job->in_len, job->out, job->out_len);
  if (job->written == 0) job->error = "libdeflate: output buffer too small";
}

static void complete(napi_env env, napi_status status, void *data) {
  job_t *job = data;
  napi_value result;
  if (status != napi_ok) job->error = "libdeflate: compression cancelled";
  if (job->error == NULL) {
    napi_create_double(env, (double)job->written, &result);
    napi_resolve_deferred(env, job->deferred, result);
  } else {
    napi_value message;
    napi_create_string_utf8(env, job->error, NAPI_AUTO_LENGTH, &message);
    napi_create_error(env, NULL, message, &result);
    napi_reject_deferred(env, job->deferred, result);
  }
  napi_delete_reference(env, job->input_ref);
  napi_delete_reference(env, job->output_ref);
  napi_delete_async_work(env, job->work);
  free(job);
}

static napi_value throw_range(napi_env env, const char *message) {
  napi_throw_range_error(env, NULL, message);
  return NULL;
}

static napi_value bound(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  double length;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_double(env, argv[0], &length) != napi_ok || !(length >= 0) || length > (double)UINT32_MAX)
    return throw_range(env, "bound(length): length must be a number of bytes");
  napi_create_double(env, (double)bound_of((size_t)length), &result);
  return result;
}

static napi_value compress(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], promise, name;
  int32_t level;
  void *in, *out;
  size_t in_len, out_len;
  bool is_buffer;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3)
    return throw_range(env, "compress(input, output, level): three arguments");
  for (int i = 0; i < 2; i++) {
    if (napi_is_buffer(env, argv[i], &is_buffer) != napi_ok || !is_buffer)
      return throw_range(env, "compress(input, output, level): input and output must be Buffers");
  }
  napi_get_buffer_info(env, argv[0], &in, &in_len);
  napi_get_buffer_info(env, argv[1], &out, &out_len);
  if (napi_get_value_int32(env, argv[2], &level) != napi_ok || level < 1 || level > MAX_LEVEL)
    return throw_range(env, "compress(): level must be an integer 1-12");
  if (in_len < MIN_INPUT) return throw_range(env, "compress(): input shorter than 64 bytes");
  if (out_len < bound_of(in_len)) return throw_range(env, "compress(): output smaller than bound(input.length)");

  job_t *job = calloc(1, sizeof *job);
  if (job == NULL) {
    napi_throw_error(env, NULL, "libdeflate: out of memory");
    return NULL;
  }
  job->in = in;
  job->in_len = in_len;
  job->out = out;
  job->out_len = out_len;
  job->level = level;
  napi_create_reference(env, argv[0], 1, &job->input_ref);
  napi_create_reference(env, argv[1], 1, &job->output_ref);
  napi_create_promise(env, &job->deferred, &promise);
  napi_create_string_utf8(env, "s3dedup:deflate", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, execute, complete, job, &job->work);
  napi_queue_async_work(env, job->work);
  return promise;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"bound", NULL, bound, NULL, NULL, NULL, napi_enumerable, NULL},
      {"compress", NULL, compress, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
