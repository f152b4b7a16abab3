// Per-block compression into raw deflate segments that concatenate into one valid deflate stream.
import { promisify } from 'node:util';
import { constants, crc32, deflateRaw, deflateRawSync, inflateRawSync } from 'node:zlib';
import { NATIVE_MIN_BYTES, nativeDeflate, type NativeDeflate } from './native-deflate.js';

const deflateRawAsync = promisify(deflateRaw);

/** One stored block: its compressed form plus what the gzip trailer needs about the original. */
export interface Segment {
  /** raw deflate bytes ending with a full flush (byte-aligned, no final-block bit) */
  data: Buffer;
  /** CRC-32 (gzip polynomial) of the uncompressed block */
  crc32: number;
  /** uncompressed length in bytes */
  size: number;
}

/** Bytes deflated by the incompressibility probe (4 KiB). */
const PROBE_BYTES = 4096;
/**
 * Below this many bytes the probe costs about as much as compressing the block itself
 * (8 KiB; most Filetracker files are this small).
 */
const PROBE_MIN_BYTES = 8192;
/** The probe calls a block incompressible when level 1 saves less than 5% of the sample. */
const PROBE_MAX_RATIO = 0.95;
/**
 * Bits per byte of the sample's byte histogram above which it is taken as incompressible
 * without deflating it: 4 KiB of uniform random bytes measure about 7.955, compressed and
 * encrypted formats 7.9 and up.
 */
const ENTROPY_INCOMPRESSIBLE = 7.9;
/** Below this many bits per byte, Huffman coding alone saves over 25%: no probe needed. */
const ENTROPY_COMPRESSIBLE = 6;

/** Shannon entropy of the bytes of `sample`, in bits per byte (0..8). */
function byteEntropy(sample: Uint8Array): number {
  const counts = new Uint32Array(256);
  for (let i = 0; i < sample.length; i++) counts[sample[i]]++;
  let bits = 0;
  for (let v = 0; v < 256; v++) {
    const c = counts[v];
    if (c !== 0) bits -= c * Math.log2(c / sample.length);
  }
  return bits / sample.length;
}

/**
 * Cheap guess whether deflating `block` is a waste of CPU (already compressed,
 * encrypted or random data), from 4 KiB in the middle (the middle skips headers of file
 * formats, which are often compressible when the payload is not). The byte entropy of the
 * sample decides the clear cases; in between, deflating the sample at level 1 decides. The
 * entropy pass costs about a quarter of the deflate probe on random data, which was 5% of a
 * large random PUT's event-loop time.
 *
 * @example
 * looksIncompressible(randomBytes(131_072)); // true
 * looksIncompressible(Buffer.from('a'.repeat(131_072))); // false
 */
export function looksIncompressible(block: Buffer): boolean {
  if (block.length < PROBE_MIN_BYTES) return false;
  const from = Math.max(0, Math.floor((block.length - PROBE_BYTES) / 2));
  const sample = block.subarray(from, from + PROBE_BYTES);
  const entropy = byteEntropy(sample);
  if (entropy >= ENTROPY_INCOMPRESSIBLE) return true;
  if (entropy < ENTROPY_COMPRESSIBLE) return false;
  // A 4 KiB window covers the whole sample and makes zlib's state allocation several times cheaper.
  const probe = deflateRawSync(sample, { level: 1, windowBits: 12 });
  return probe.length >= sample.length * PROBE_MAX_RATIO;
}

/** Largest payload of one stored deflate block (LEN is 16 bits). */
const STORED_MAX = 65_535;
/** The empty stored block a full flush ends with: header byte, LEN 0, NLEN 0xffff. */
const FULL_FLUSH_MARK = Buffer.from([0x00, 0x00, 0x00, 0xff, 0xff]);

/**
 * Level 0 without zlib: stored blocks are a 5-byte header (BFINAL 0, BTYPE 00, LEN, NLEN)
 * before each <= 64 KiB piece, and the segment starts byte-aligned, so this is a plain
 * copy. zlib's level 0 emits the same format but costs a handle allocation and a
 * thread-pool round trip per block, which made it about 3x slower than this.
 */
function storeSegment(block: Buffer): Buffer {
  const pieces = Math.ceil(block.length / STORED_MAX);
  const out = Buffer.allocUnsafe(block.length + 5 * pieces + FULL_FLUSH_MARK.length);
  let at = 0;
  for (let from = 0; from < block.length; from += STORED_MAX) {
    const n = Math.min(STORED_MAX, block.length - from);
    out[at] = 0x00;
    out.writeUInt16LE(n, at + 1);
    out.writeUInt16LE(n ^ 0xffff, at + 3);
    at += 5;
    at += block.copy(out, at, from, from + n);
  }
  FULL_FLUSH_MARK.copy(out, at);
  return out;
}

/** A deflater of one block into a segment's raw deflate (ending in a sync flush), off the event loop. */
export type SegmentDeflater = (block: Buffer, level: number) => Promise<Buffer>;

/** zlib's deflate with a full flush, on the libuv pool. */
export const zlibDeflater: SegmentDeflater = (block, level) => {
  // One output buffer large enough for the worst case (zlib's deflateBound is below this):
  // with the default 16 KiB each further output chunk costs another thread-pool round trip.
  const chunkSize = Math.max(16_384, block.length + (block.length >>> 11) + 64);
  return deflateRawAsync(block, { level, finishFlush: constants.Z_FULL_FLUSH, chunkSize });
};

/**
 * libdeflate's, on the addon's own threads (one per CPU, at a lower priority than the event loop
 * and the libuv pool: native/libdeflate-addon.c); about 1.7x as fast as zlib at the same level and
 * ratio. Blocks too short for it go to zlib.
 */
export function libdeflateDeflater(addon: NativeDeflate): SegmentDeflater {
  return async (block, level) => {
    if (block.length < NATIVE_MIN_BYTES) return zlibDeflater(block, level);
    const out = Buffer.allocUnsafe(addon.bound(block.length));
    const n = await addon.compress(block, out, level);
    // A segment that fills under 3/4 of its buffer is copied out, so that what an upload holds
    // (on S3 up to two extents of segments) is its compressed bytes, not its blocks' sizes.
    return n < out.length * 0.75 ? Buffer.from(out.subarray(0, n)) : out.subarray(0, n);
  };
}

/** What compressSegment deflates with: libdeflate when its addon is built, else zlib. */
export const defaultDeflaterName: 'libdeflate' | 'zlib' = nativeDeflate ? 'libdeflate' : 'zlib';
export const defaultDeflater: SegmentDeflater = nativeDeflate ? libdeflateDeflater(nativeDeflate) : zlibDeflater;

/**
 * Compresses one block off the event loop, so several blocks compress in
 * parallel while the event loop keeps reading. The segment ends with a sync flush
 * (an empty stored block, padded to a byte boundary and ending `00 00 ff ff`)
 * instead of a final block, so segments can be concatenated and closed with
 * `DEFLATE_END` to form one gzip member; each segment is compressed on its own,
 * so none refers back into another.
 *
 * Incompressible data is stored at level 0 (stored blocks, 5 bytes of overhead
 * per 64 KiB): it costs a copy instead of deflate's CPU and inflates at memcpy speed.
 *
 * @param block uncompressed bytes, any length including 0
 * @param level deflate level 0-9, default 6
 * @param crc the block's CRC-32 when the caller has it already
 * @param deflate the deflater (tests pass each)
 * @example
 * const seg = await compressSegment(Buffer.from('hello'));
 * inflateSegment(seg.data).toString(); // 'hello'
 */
export async function compressSegment(block: Buffer, level = 6, crc = crc32(block), deflate = defaultDeflater): Promise<Segment> {
  if (!Number.isInteger(level) || level < 0 || level > 9) {
    throw new RangeError(`compression level must be an integer 0-9, got ${level}`);
  }
  const size = block.length;
  if (level === 0 || looksIncompressible(block)) return { data: storeSegment(block), crc32: crc, size };
  let data = await deflate(block, level);
  // The probe missed: keep the stored form, which is barely larger and far cheaper to inflate.
  if (data.length >= size) data = storeSegment(block);
  return { data, crc32: crc, size };
}

/**
 * Decodes one segment on its own. Z_SYNC_FLUSH as the finish flush because a
 * segment has no final block, which zlib would otherwise report as a truncated stream.
 *
 * @example
 * inflateSegment((await compressSegment(block)).data).equals(block); // true
 */
export function inflateSegment(segment: Buffer): Buffer {
  return inflateRawSync(segment, { finishFlush: constants.Z_SYNC_FLUSH });
}
