// Contents that fit in one block are stored as one whole gzip member, the bytes a GET sends.
//
// A content no longer than the chunker's minimum is always exactly one block, and most
// Filetracker files are that small. The Filetracker client sends them gzip-compressed; keeping
// its deflate stream (under our own 10-byte header, so no client's file name or mtime is handed
// to another) saves deflating the content again, which was 33 us of a 4 KiB PUT's ~250 us on the
// event loop, and a one-block content needs no block row, no block-list row and no segment
// framing: the object at maps/<sha256> is the whole answer to a GET (docs/storage.md).
//
// The client's stream is kept only when the body is exactly one gzip member whose trailer
// matches the content: a body with a second member or bytes after the first is re-encoded,
// since some decoders stop at the first member and a GET would hand that on to every client
// that uploads the same content later. The check needs one inflate (a second one that had to
// throw cost 35 us: zlib's exceptions are expensive), by libdeflate when its addon is built.
import { constants, crc32, deflateRawSync, inflateRawSync } from 'node:zlib';
import { GZIP_HEADER, gzipTrailer } from './gzip-member.js';
import { NATIVE_MIN_BYTES, nativeDeflate, type NativeDeflate } from './native-deflate.js';
import { looksIncompressible } from './segment.js';

/** Whether a content row describes a whole gzip member at maps/<hash>: no blocks, yet stored bytes. */
export function isWholeMember(c: { blockCount: number; storedSize: number }): boolean {
  return c.blockCount === 0 && c.storedSize > 0;
}

const FTEXT_FHCRC = 0x02;
const FEXTRA = 0x04;
const FNAME = 0x08;
const FCOMMENT = 0x10;
const RESERVED = 0xe0;

/**
 * Length of the RFC 1952 header at the start of `body`, its optional fields included.
 *
 * @returns null when `body` does not start with a complete gzip header of method deflate
 * @example
 * gzipHeaderLength(gzipSync('x')); // 10
 */
export function gzipHeaderLength(body: Buffer): number | null {
  if (body.length < 10 || body[0] !== 0x1f || body[1] !== 0x8b || body[2] !== 8) return null;
  const flags = body[3];
  if (flags & RESERVED) return null;
  let at = 10;
  if (flags & FEXTRA) {
    if (at + 2 > body.length) return null;
    at += 2 + body.readUInt16LE(at);
  }
  for (const flag of [FNAME, FCOMMENT]) {
    if (!(flags & flag)) continue;
    const end = body.indexOf(0, at);
    if (end < 0) return null;
    at = end + 1;
  }
  if (flags & FTEXT_FHCRC) at += 2;
  return at <= body.length ? at : null;
}

/** A content that fits one block, with the raw deflate stream (final block included) of its member. */
export interface SmallContent {
  content: Buffer;
  crc32: number;
  /** a complete raw deflate stream of the content */
  deflate: Buffer;
}

/**
 * Inflates `deflate` into exactly `size` bytes: the content, or null unless `deflate` is exactly
 * one complete raw deflate stream (nothing after its final block) of `size` bytes.
 */
export type ExactInflater = (deflate: Buffer, size: number) => Buffer | null;

/** What inflateRawSync returns with `info: true`. */
interface InflateInfo {
  buffer: Buffer;
  engine: { bytesWritten: number };
}

/** zlib's inflate: allocates a zlib handle per call, and throws on a bad stream. */
export const zlibExactInflater: ExactInflater = (deflate, size) => {
  let inflated: InflateInfo;
  try {
    inflated = inflateRawSync(deflate, { maxOutputLength: Math.max(1, size), info: true }) as unknown as InflateInfo;
  } catch {
    return null; // bad data, or more than `size` bytes (ERR_BUFFER_TOO_LARGE)
  }
  // inflate stops at the final block and ignores what follows it: the stream must end exactly
  // where the trailer starts. bytesWritten counts the input it consumed (test/store pins it).
  return inflated.engine.bytesWritten === deflate.length && inflated.buffer.length === size ? inflated.buffer : null;
};

/** libdeflate's (the addon's), on the calling thread, into one buffer of the known size. */
export function libdeflateExactInflater(addon: NativeDeflate): ExactInflater {
  return (deflate, size) => {
    const content = Buffer.allocUnsafe(size);
    return addon.inflateExact(deflate, content) ? content : null;
  };
}

const defaultExactInflater: ExactInflater = nativeDeflate ? libdeflateExactInflater(nativeDeflate) : zlibExactInflater;

/**
 * Reads a gzip body that is exactly one member. The content's size comes from the trailer, so
 * the content is inflated into one buffer of that size, and checked against the trailer's CRC.
 *
 * @param maxContent longest content accepted, in bytes
 * @returns the content with the member's own deflate stream; null when the body is not exactly
 *   one valid member or its trailer gives a content longer than maxContent (the caller then
 *   inflates it the general way, which also finds a longer content, or what is wrong)
 */
export function readSingleMember(body: Buffer, maxContent: number, inflate = defaultExactInflater): SmallContent | null {
  const at = gzipHeaderLength(body);
  if (at === null || body.length < at + 8 + 1) return null;
  const size = body.readUInt32LE(body.length - 4);
  if (size > maxContent) return null;
  const deflate = body.subarray(at, body.length - 8);
  const content = inflate(deflate, size);
  if (content === null) return null;
  const crc = crc32(content);
  if (body.readUInt32LE(body.length - 8) !== crc) return null;
  return { content, crc32: crc, deflate };
}

/** The empty final block (static Huffman, end-of-block only) that completes a sync-flushed stream. */
const FINAL_EMPTY_BLOCK = Buffer.from([0x03, 0x00]);

/**
 * Deflates a small content into a complete raw deflate stream: at `level`, or stored when it
 * looks incompressible or deflate would not make it smaller. With the addon, libdeflate on the
 * event loop (its stream ends in a sync flush, so the empty final block is appended).
 */
export function deflateSmall(content: Buffer, level: number, addon = nativeDeflate): Buffer {
  if (level > 0 && !looksIncompressible(content)) {
    let data: Buffer;
    if (addon && content.length >= NATIVE_MIN_BYTES) {
      const out = Buffer.allocUnsafe(addon.bound(content.length) + FINAL_EMPTY_BLOCK.length);
      const n = addon.compressSync(content, out, level);
      data = out.subarray(0, n + FINAL_EMPTY_BLOCK.copy(out, n));
    } else {
      data = deflateRawSync(content, { level });
    }
    if (data.length < content.length) return data;
  }
  return deflateRawSync(content, { level: 0, finishFlush: constants.Z_FINISH });
}

/**
 * The stored object: our fixed gzip header, the deflate stream, the trailer.
 *
 * @example
 * gunzipSync(wholeMember(deflateSmall(c, 6), crc32(c), c.length)).equals(c); // true
 */
export function wholeMember(deflate: Buffer, crc: number, size: number): Buffer {
  return Buffer.concat([GZIP_HEADER, deflate, gzipTrailer(crc, size)]);
}
