// FastCDC content-defined chunking: block boundaries follow the content, so an insertion shifts only nearby blocks.
import { Transform, type TransformCallback } from 'node:stream';
import { GEAR } from './gear.js';
import { nativeDeflate } from './native-deflate.js';

/** Chunk size bounds. All in bytes. */
export interface ChunkerParams {
  /** no cut before this many bytes (hashing is skipped there); every chunk but the last is at least this long */
  minSize: number;
  /** target size, a power of two; the cut condition is stricter below it and looser above it */
  avgSize: number;
  /** forced cut at this many bytes; no chunk is longer */
  maxSize: number;
}

/**
 * Defaults: a 128 KiB target. Smaller averages dedup better on real data (source
 * releases, logs) at the cost of more objects and requests per byte; see DESIGN.md §4.
 */
export const DEFAULT_CHUNKER: ChunkerParams = {
  minSize: 32_768, // 32 KiB
  avgSize: 131_072, // 128 KiB
  maxSize: 524_288, // 512 KiB
};

/**
 * Checks parameters before they are used or recorded in a bucket descriptor.
 *
 * @returns null when valid, otherwise a human-readable reason
 * @example
 * validateChunkerParams({ minSize: 100, avgSize: 1000, maxSize: 4000 }); // 'avgSize must be a power of two ...'
 */
export function validateChunkerParams(p: ChunkerParams): string | null {
  const { minSize, avgSize, maxSize } = p;
  for (const [name, value] of [['minSize', minSize], ['avgSize', avgSize], ['maxSize', maxSize]] as const) {
    if (!Number.isSafeInteger(value) || value <= 0) return `${name} must be a positive integer, got ${value}`;
  }
  // Both masks must fit in 32 bits with a few bits to spare: log2(avg) + 2 <= 30 and log2(avg) - 2 >= 6.
  if ((avgSize & (avgSize - 1)) !== 0 || avgSize < 256 || avgSize > 268_435_456) {
    return `avgSize must be a power of two between 256 B and 256 MiB, got ${avgSize}`;
  }
  if (minSize < 64) return `minSize must be at least 64 bytes, got ${minSize}`;
  if (!(minSize < avgSize && avgSize < maxSize)) {
    return `sizes must satisfy minSize < avgSize < maxSize, got ${minSize} / ${avgSize} / ${maxSize}`;
  }
  // The carry buffer is allocated at maxSize up front.
  if (maxSize > 1_073_741_824) return `maxSize must be at most 1 GiB, got ${maxSize}`;
  return null;
}

/**
 * A mask of the `bits` highest bits of a 32-bit word, as an int32. High bits of
 * the gear hash depend on up to the last 32 bytes, low bits on only the last few,
 * so testing high bits makes each cut decision depend on a window of content.
 */
function highMask(bits: number): number {
  return (~0 << (32 - bits)) | 0;
}

/** The hash where the last scan() stopped; a module variable so scan() can return the cut position alone. */
let scanHash = 0;

/**
 * Rolls the gear hash over data[i, end) from state h and stops at the first byte
 * after which no bit of `mask` is set.
 *
 * @returns the cut (index just past that byte), or -1 when there is none; the hash is left in scanHash
 */
function scan(data: Uint8Array, i: number, end: number, h: number, mask: number): number {
  const gear = GEAR;
  // Unrolled by four: V8 does not unroll, and this is about a third faster than the plain loop.
  for (const end4 = end - 3; i < end4; i += 4) {
    h = ((h << 1) + gear[data[i]]) | 0;
    if ((h & mask) === 0) return found(h, i + 1);
    h = ((h << 1) + gear[data[i + 1]]) | 0;
    if ((h & mask) === 0) return found(h, i + 2);
    h = ((h << 1) + gear[data[i + 2]]) | 0;
    if ((h & mask) === 0) return found(h, i + 3);
    h = ((h << 1) + gear[data[i + 3]]) | 0;
    if ((h & mask) === 0) return found(h, i + 4);
  }
  for (; i < end; i++) {
    h = ((h << 1) + gear[data[i]]) | 0;
    if ((h & mask) === 0) return found(h, i + 1);
  }
  scanHash = h;
  return -1;
}

function found(h: number, cut: number): number {
  scanHash = h;
  return cut;
}

/**
 * The first cut in data[i, end): tested against maskS before normalEnd and maskL from there on.
 *
 * @returns the cut, or -1 with the hash left in scanHash
 */
export type CutSearch = (data: Buffer, i: number, normalEnd: number, end: number, h: number, maskS: number, maskL: number) => number;

/** The cut search in JavaScript. */
export const jsCutSearch: CutSearch = (data, i, normalEnd, end, h, maskS, maskL) => {
  const cut = scan(data, i, normalEnd, h, maskS);
  return cut >= 0 ? cut : scan(data, Math.max(i, normalEnd), end, scanHash, maskL);
};

/** The same search in the addon: chunking random bytes about 1.4x as fast (bench limits), one call per search. */
export const nativeCutSearch: CutSearch | null = nativeDeflate
  ? (data, i, normalEnd, end, h, maskS, maskL) => {
      const r = nativeDeflate!.gearScan(data, GEAR, i, normalEnd, end, h, maskS, maskL);
      if (r >= 0) return r;
      scanHash = (-1 - r) | 0;
      return -1;
    }
  : null;

/**
 * Incremental FastCDC (normalized chunking, level 2: the mask has log2(avg)+2
 * bits below avgSize and log2(avg)-2 bits above it, which narrows the size
 * distribution around avgSize). Cuts depend only on content, so any split of the
 * input into push() calls yields the same chunks as one call with all of it.
 *
 * @example
 * const c = new Chunker(DEFAULT_CHUNKER);
 * const blocks = [...c.push(a), ...c.push(b)];
 * const last = c.finish(); if (last) blocks.push(last);
 */
export class Chunker {
  readonly #minSize: number;
  readonly #avgSize: number;
  readonly #maxSize: number;
  readonly #maskS: number;
  readonly #maskL: number;
  /** Bytes of the current chunk that arrived in earlier push() calls; never more than maxSize. */
  readonly #carry: Buffer;
  #carryLen = 0;
  /** Rolling hash carried across push() calls; 0 at every chunk start. */
  #hash = 0;

  readonly #search: CutSearch;

  /** @param search the cut search: the addon's when it is built (tests pass either) */
  constructor(p: ChunkerParams, search: CutSearch = nativeCutSearch ?? jsCutSearch) {
    const reason = validateChunkerParams(p);
    if (reason !== null) throw new RangeError(`invalid chunker parameters: ${reason}`);
    this.#minSize = p.minSize;
    this.#avgSize = p.avgSize;
    this.#maxSize = p.maxSize;
    const bits = Math.log2(p.avgSize);
    this.#maskS = highMask(bits + 2);
    this.#maskL = highMask(bits - 2);
    this.#carry = Buffer.allocUnsafe(p.maxSize);
    this.#search = search;
  }

  /**
   * Feeds more input.
   *
   * @param data any length, including 0; not retained (the chunks are copies)
   * @returns the chunks completed by this input, each a fresh Buffer, in order
   */
  push(data: Buffer): Buffer[] {
    const out: Buffer[] = [];
    const len = data.length;
    const maskS = this.#maskS;
    const maskL = this.#maskL;
    const minSize = this.#minSize;
    const avgSize = this.#avgSize;
    const maxSize = this.#maxSize;
    let carried = this.#carryLen;
    let h = this.#hash;
    // The current chunk is carry[0, carried) followed by data[start, ...); data[i] sits at chunk offset carried + i - start.
    let start = 0;
    let i = 0;
    for (;;) {
      const origin = start - carried; // data index where chunk offset 0 would be
      // Cut-point skipping: bytes below minSize are never hashed.
      if (i < origin + minSize) i = origin + minSize;
      if (i >= len) break;
      const hardEnd = origin + maxSize;
      const end = Math.min(len, hardEnd);
      let cut = this.#search(data, i, Math.min(len, origin + avgSize), end, h, maskS, maskL);
      if (cut < 0 && end === hardEnd) cut = hardEnd;
      if (cut < 0) {
        h = scanHash;
        break; // the chunk goes on into the next push()
      }
      out.push(this.#emit(carried, data, start, cut));
      carried = 0;
      h = 0;
      start = cut;
      i = cut;
    }
    // Only the unfinished tail is copied aside; whole chunks inside `data` are copied once, straight out.
    if (start < len) {
      data.copy(this.#carry, carried, start, len);
      carried += len - start;
    }
    this.#carryLen = carried;
    this.#hash = h;
    return out;
  }

  /**
   * Ends the input and resets the chunker for reuse.
   *
   * @returns the last chunk (possibly shorter than minSize), or null when the input ended on a boundary or was empty
   */
  finish(): Buffer | null {
    const carried = this.#carryLen;
    this.#carryLen = 0;
    this.#hash = 0;
    if (carried === 0) return null;
    const chunk = Buffer.allocUnsafeSlow(carried);
    this.#carry.copy(chunk, 0, 0, carried);
    return chunk;
  }

  /** Joins the carried prefix with data[start, end) into a chunk that owns its memory. */
  #emit(carried: number, data: Buffer, start: number, end: number): Buffer {
    // allocUnsafeSlow: never a slice of Node's shared pool, so a retained chunk pins nothing else.
    const chunk = Buffer.allocUnsafeSlow(carried + end - start);
    if (carried > 0) this.#carry.copy(chunk, 0, 0, carried);
    data.copy(chunk, carried, start, end);
    return chunk;
  }
}

/**
 * A Transform that takes bytes and emits chunks (objectMode on the readable side).
 * The readable buffer holds at most 4 chunks (<= 4 * maxSize bytes), so a slow
 * consumer pauses the source instead of letting chunks pile up.
 *
 * @example
 * await pipeline(body, createChunkerStream(DEFAULT_CHUNKER), async function* (chunks) { for await (const c of chunks) ... });
 */
export function createChunkerStream(p: ChunkerParams): Transform {
  const chunker = new Chunker(p);
  return new Transform({
    readableObjectMode: true,
    readableHighWaterMark: 4,
    transform(data: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
      for (const chunk of chunker.push(data)) this.push(chunk);
      callback();
    },
    flush(callback: TransformCallback): void {
      const last = chunker.finish();
      if (last !== null) this.push(last);
      callback();
    },
  });
}

/**
 * Chunks a whole buffer at once.
 *
 * @example
 * chunkBuffer(Buffer.alloc(0), DEFAULT_CHUNKER); // []
 */
export function chunkBuffer(data: Buffer, p: ChunkerParams, search?: CutSearch): Buffer[] {
  const chunker = new Chunker(p, search);
  const chunks = chunker.push(data);
  const last = chunker.finish();
  if (last !== null) chunks.push(last);
  return chunks;
}
