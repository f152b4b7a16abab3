import { createHash } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, it, expect } from 'vitest';
import {
  Chunker,
  DEFAULT_CHUNKER,
  chunkBuffer,
  createChunkerStream,
  jsCutSearch,
  nativeCutSearch,
  validateChunkerParams,
  type CutSearch,
  type ChunkerParams,
} from '../../src/store/chunker.js';
import { GEAR, GEAR_SEED } from '../../src/store/gear.js';
import { nativeDeflate } from '../../src/store/native-deflate.js';

/** mulberry32: a seeded PRNG, so failures reproduce. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  };
}

function randomBuffer(seed: number, length: number): Buffer {
  const next = rng(seed);
  const buf = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) buf[i] = next() & 0xff;
  return buf;
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Both cut searches must cut identically; the addon's is the default, and CI builds it. */
const SEARCHES: Array<[string, CutSearch]> = [
  ['addon', nativeCutSearch!],
  ['JavaScript', jsCutSearch],
];

/** Small parameters make many chunks out of little data, so edge cases come up often. */
const SMALL: ChunkerParams = { minSize: 64, avgSize: 256, maxSize: 1024 };

/**
 * FastCDC cut points written as plainly as the paper's pseudo-code, one chunk at a
 * time over the whole input, with unsigned arithmetic; the optimized streaming
 * Chunker must agree with it exactly.
 */
function referenceLengths(data: Buffer, p: ChunkerParams): number[] {
  const bits = Math.log2(p.avgSize);
  const maskS = 2 ** 32 - 2 ** (32 - (bits + 2));
  const maskL = 2 ** 32 - 2 ** (32 - (bits - 2));
  const lengths: number[] = [];
  for (let start = 0; start < data.length; ) {
    const n = data.length - start;
    let length = Math.min(n, p.maxSize);
    if (n > p.minSize) {
      let h = 0;
      for (let i = p.minSize; i < Math.min(n, p.maxSize); i++) {
        h = (h * 2 + (GEAR[data[start + i]] >>> 0)) % 2 ** 32;
        if ((h & (i < p.avgSize ? maskS : maskL)) === 0) {
          length = i + 1;
          break;
        }
      }
    }
    lengths.push(length);
    start += length;
  }
  return lengths;
}

function checkBounds(chunks: Buffer[], input: Buffer, p: ChunkerParams): void {
  expect(Buffer.concat(chunks).equals(input)).toBe(true);
  chunks.forEach((c, i) => {
    expect(c.length).toBeGreaterThan(0);
    expect(c.length).toBeLessThanOrEqual(p.maxSize);
    if (i < chunks.length - 1) expect(c.length).toBeGreaterThanOrEqual(p.minSize);
  });
}

/** Feeds `data` in pieces cut at random points (sometimes empty, sometimes single bytes). */
function chunkInPieces(data: Buffer, p: ChunkerParams, seed: number, maxPiece: number, search: CutSearch): Buffer[] {
  const next = rng(seed);
  const chunker = new Chunker(p, search);
  const out: Buffer[] = [];
  for (let at = 0; at < data.length; ) {
    const piece = next() % 4 === 0 ? next() % 3 : next() % maxPiece;
    out.push(...chunker.push(data.subarray(at, at + piece)));
    at += piece;
  }
  const last = chunker.finish();
  if (last) out.push(last);
  return out;
}

describe('gear table', () => {
  it('is SHA-256 of the seed in counter mode, and pinned', () => {
    expect(GEAR_SEED).toBe('s3dedup-ts gear v1');
    for (let i = 0; i < 256; i++) {
      const digest = createHash('sha256').update(GEAR_SEED + String(i >> 3)).digest();
      expect(GEAR[i]).toBe(digest.readInt32BE((i & 7) * 4));
    }
    // Literal values: changing them moves every chunk boundary and breaks dedup with stored blocks.
    expect([GEAR[0], GEAR[1], GEAR[255]]).toEqual([538881490, -2042809510, 550603910]);
  });
});

describe('validateChunkerParams', () => {
  it('accepts the defaults', () => {
    expect(validateChunkerParams(DEFAULT_CHUNKER)).toBeNull();
    expect(validateChunkerParams(SMALL)).toBeNull();
  });

  it.each([
    [{ minSize: 100, avgSize: 1000, maxSize: 4000 }, /power of two/],
    [{ minSize: 4096, avgSize: 4096, maxSize: 8192 }, /minSize < avgSize < maxSize/],
    [{ minSize: 1024, avgSize: 4096, maxSize: 4096 }, /minSize < avgSize < maxSize/],
    [{ minSize: 10, avgSize: 4096, maxSize: 8192 }, /at least 64/],
    [{ minSize: 1.5, avgSize: 4096, maxSize: 8192 }, /positive integer/],
    [{ minSize: 1024, avgSize: 128, maxSize: 8192 }, /power of two/],
    [{ minSize: 1024, avgSize: 4096, maxSize: 2 ** 31 }, /at most 1 GiB/],
  ])('rejects %o', (p, reason) => {
    expect(validateChunkerParams(p)).toMatch(reason);
    expect(() => new Chunker(p)).toThrow(RangeError);
  });
});

describe.each(SEARCHES)('chunkBuffer (%s cut search)', (_name, search) => {
  it('returns no chunks for empty input, one short chunk for short input', () => {
    expect(chunkBuffer(Buffer.alloc(0), DEFAULT_CHUNKER, search)).toEqual([]);
    const short = randomBuffer(1, 1000);
    const chunks = chunkBuffer(short, DEFAULT_CHUNKER, search);
    expect(chunks).toHaveLength(1);
    expect(chunks[0].equals(short)).toBe(true);
  });

  it('respects the size bounds on random data', () => {
    const data = randomBuffer(2, 4 << 20);
    const chunks = chunkBuffer(data, DEFAULT_CHUNKER, search);
    checkBounds(chunks, data, DEFAULT_CHUNKER);
    // Normalized chunking keeps sizes near the target: mean within [avg / 2, 2 * avg].
    const mean = data.length / chunks.length;
    expect(mean).toBeGreaterThan(DEFAULT_CHUNKER.avgSize / 2);
    expect(mean).toBeLessThan(DEFAULT_CHUNKER.avgSize * 2);
    checkBounds(chunkBuffer(data.subarray(0, 200_000), SMALL, search), data.subarray(0, 200_000), SMALL);
  });

  it('cuts at maxSize when the content never matches (constant bytes)', () => {
    for (const fill of [0, 0xff, 0x5a]) {
      const data = Buffer.alloc(3 * 1024 * 1024 + 17, fill);
      checkBounds(chunkBuffer(data, DEFAULT_CHUNKER, search), data, DEFAULT_CHUNKER);
      checkBounds(chunkBuffer(data.subarray(0, 10_000), SMALL, search), data.subarray(0, 10_000), SMALL);
    }
  });

  it('returns copies that own their memory', () => {
    const data = randomBuffer(3, 1 << 20);
    const chunks = chunkBuffer(data, DEFAULT_CHUNKER, search);
    const before = sha256(chunks[0]);
    data.fill(0);
    expect(sha256(chunks[0])).toBe(before);
    expect(chunks[0].byteOffset).toBe(0);
  });

  it('agrees with a plain reference implementation', () => {
    const data = randomBuffer(10, 4 << 20);
    expect(chunkBuffer(data, DEFAULT_CHUNKER, search).map((c) => c.length)).toEqual(referenceLengths(data, DEFAULT_CHUNKER));
    const small = data.subarray(0, 300_000);
    expect(chunkBuffer(small, SMALL, search).map((c) => c.length)).toEqual(referenceLengths(small, SMALL));
    const zeros = Buffer.alloc(2 << 20);
    expect(chunkBuffer(zeros, DEFAULT_CHUNKER, search).map((c) => c.length)).toEqual(referenceLengths(zeros, DEFAULT_CHUNKER));
  });

  it('keeps the pinned cut points (a change would break dedup with stored blocks)', () => {
    const lengths = chunkBuffer(randomBuffer(1, 4 << 20), DEFAULT_CHUNKER, search).map((c) => c.length);
    expect(lengths).toHaveLength(29);
    expect(lengths.slice(0, 8)).toEqual([144883, 156009, 144563, 143024, 155829, 58006, 161823, 118601]);
  });
});

describe.each(SEARCHES)('streaming (%s cut search)', (_name, search) => {
  it('gives the same chunks for any split of the input (small params, many seeds)', () => {
    const data = randomBuffer(4, 300_000);
    const whole = chunkBuffer(data, SMALL, search).map(sha256);
    for (let seed = 1; seed <= 20; seed++) {
      expect(chunkInPieces(data, SMALL, seed, 2000, search).map(sha256)).toEqual(whole);
    }
    expect(chunkInPieces(data, SMALL, 99, 3, search).map(sha256)).toEqual(whole);
  });

  it('gives the same chunks for any split of the input (default params)', () => {
    const data = randomBuffer(5, 6 << 20);
    const whole = chunkBuffer(data, DEFAULT_CHUNKER, search).map(sha256);
    for (const maxPiece of [1000, 70_000, 600_000, 3 << 20]) {
      expect(chunkInPieces(data, DEFAULT_CHUNKER, maxPiece, maxPiece, search).map(sha256)).toEqual(whole);
    }
  });

  it('can be reused after finish()', () => {
    const chunker = new Chunker(SMALL, search);
    const a = randomBuffer(6, 5000);
    const first = [...chunker.push(a), chunker.finish()];
    const second = [...chunker.push(a), chunker.finish()];
    expect(second.map((c) => c && sha256(c))).toEqual(first.map((c) => c && sha256(c)));
    expect(chunker.finish()).toBeNull();
  });

  it('createChunkerStream emits the same chunks in a pipeline', async () => {
    const data = randomBuffer(7, 3 << 20);
    const expected = chunkBuffer(data, DEFAULT_CHUNKER, search).map(sha256);
    const pieces: Buffer[] = [];
    for (let at = 0; at < data.length; at += 65_536 + 7) pieces.push(data.subarray(at, at + 65_536 + 7));
    const got: string[] = [];
    await pipeline(
      Readable.from(pieces),
      createChunkerStream(DEFAULT_CHUNKER),
      new Writable({
        objectMode: true,
        write(chunk: Buffer, _enc, cb) {
          got.push(sha256(chunk));
          cb();
        },
      }),
    );
    expect(got).toEqual(expected);
  });
});

describe('dedup', () => {
  it('an insertion in the middle changes only the chunks around it', () => {
    const original = randomBuffer(8, 4 << 20);
    const middle = original.length >> 1;
    const edited = Buffer.concat([original.subarray(0, middle), randomBuffer(9, 10), original.subarray(middle)]);
    const known = new Set(chunkBuffer(original, DEFAULT_CHUNKER).map(sha256));
    const chunks = chunkBuffer(edited, DEFAULT_CHUNKER);
    const shared = chunks.filter((c) => known.has(sha256(c))).length;
    expect(chunks.length).toBeGreaterThan(10);
    expect(shared).toBeGreaterThanOrEqual(chunks.length - 3);
  });
});

// The hash carried from one push() to the next is covered by the split tests above, for both searches.
describe('the addon cut search', () => {
  it('is built (CI builds the addon) and refuses arguments outside its input', () => {
    expect(nativeCutSearch).not.toBeNull();
    const data = randomBuffer(8, 1000);
    expect(() => nativeCutSearch!(data, 0, 500, 1001, 0, -1, -1)).toThrow(RangeError);
    expect(() => nativeCutSearch!(data, -1, 500, 1000, 0, -1, -1)).toThrow(RangeError);
    expect(() => nativeDeflate!.gearScan(data, new Int32Array(255), 0, 10, 20, 0, 0, 0)).toThrow(/Int32Array of 256/);
  });

});
