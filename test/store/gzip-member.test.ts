import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { crc32, gunzipSync, inflateRawSync } from 'node:zlib';
import { describe, it, expect } from 'vitest';
import { chunkBuffer, DEFAULT_CHUNKER } from '../../src/store/chunker.js';
import { crc32Combine } from '../../src/store/crc32-combine.js';
import { DEFLATE_END, GZIP_HEADER, combineCrcs, gzipMemberLength, gzipTrailer } from '../../src/store/gzip-member.js';
import { compressSegment, type Segment } from '../../src/store/segment.js';

/** Text-like, compressible bytes. */
function textLike(length: number): Buffer {
  const line = 'GET /ft/files/problems/abc/tests/0001.in HTTP/1.1 200 42\n';
  return Buffer.from(line.repeat(Math.ceil(length / line.length))).subarray(0, length);
}

/** Assembles the member exactly as a GET would stream it. */
function buildMember(segments: Segment[]): Buffer {
  const size = segments.reduce((n, s) => n + s.size, 0);
  return Buffer.concat([
    GZIP_HEADER,
    ...segments.map((s) => s.data),
    DEFLATE_END,
    gzipTrailer(combineCrcs(segments), size),
  ]);
}

/**
 * The GF(2) matrix-squaring crc32_combine of zlib <= 1.2.11, an independent
 * algorithm to check the x^(2^n) port against at lengths too large to hash.
 */
function matrixCombine(crc1: number, crc2: number, len2: number): number {
  const times = (mat: Uint32Array, vec: number): number => {
    let sum = 0;
    for (let i = 0; vec !== 0; i++, vec >>>= 1) if (vec & 1) sum ^= mat[i];
    return sum >>> 0;
  };
  const square = (out: Uint32Array, mat: Uint32Array): void => {
    for (let n = 0; n < 32; n++) out[n] = times(mat, mat[n]);
  };
  const odd = new Uint32Array(32);
  const even = new Uint32Array(32);
  odd[0] = 0xedb88320;
  for (let n = 1, row = 1; n < 32; n++, row <<= 1) odd[n] = row;
  square(even, odd);
  square(odd, even);
  let c = crc1 >>> 0;
  for (;;) {
    square(even, odd);
    if (len2 % 2 === 1) c = times(even, c);
    len2 = Math.floor(len2 / 2);
    if (len2 === 0) break;
    square(odd, even);
    if (len2 % 2 === 1) c = times(odd, c);
    len2 = Math.floor(len2 / 2);
    if (len2 === 0) break;
  }
  return (c ^ crc2) >>> 0;
}

describe('crc32Combine', () => {
  it('matches crc32 of the concatenation for random pairs', () => {
    for (let t = 0; t < 300; t++) {
      const a = randomBytes(t % 7 === 0 ? 0 : Math.floor(Math.random() * 5000));
      const b = randomBytes(Math.floor(Math.random() * 5000));
      expect(crc32Combine(crc32(a), crc32(b), b.length)).toBe(crc32(Buffer.concat([a, b])));
    }
  });

  it('handles len2 = 0 and signed inputs, and returns unsigned values', () => {
    const a = randomBytes(1000);
    expect(crc32Combine(crc32(a), 0, 0)).toBe(crc32(a));
    expect(crc32Combine(0, 0, 0)).toBe(0);
    expect(crc32Combine(crc32(a) | 0, crc32(a) | 0, a.length)).toBe(crc32(Buffer.concat([a, a])));
    for (let t = 0; t < 100; t++) expect(crc32Combine(0xffffffff, t * 0x01010101, t)).toBeGreaterThanOrEqual(0);
    expect(() => crc32Combine(0, 0, -1)).toThrow(RangeError);
    expect(() => crc32Combine(0, 0, 2 ** 53)).toThrow(RangeError);
  });

  it('combines many pieces of 48 MiB into crc32 of the whole', () => {
    const whole = randomBytes(48 << 20);
    let crc = 0;
    let pieces = 0;
    for (let at = 0; at < whole.length; pieces++) {
      const length = pieces % 10 === 0 ? 0 : Math.floor(Math.random() * 2_000_000);
      const piece = whole.subarray(at, at + length);
      crc = crc32Combine(crc, crc32(piece), piece.length);
      at += piece.length;
    }
    expect(crc).toBe(crc32(whole));
    // One large second part, too.
    const half = 20 << 20;
    expect(crc32Combine(crc32(whole.subarray(0, half)), crc32(whole.subarray(half)), whole.length - half)).toBe(crc32(whole));
  });

  it('agrees with the matrix method for lengths up to 2^53 - 1', () => {
    for (const len2 of [1, 2, 3, 255, 65_536, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 7, 2 ** 40 + 12_345, 2 ** 52 + 1, 2 ** 53 - 1]) {
      const c1 = crc32(randomBytes(16));
      const c2 = crc32(randomBytes(16));
      expect(crc32Combine(c1, c2, len2)).toBe(matrixCombine(c1, c2, len2));
    }
  });

  it.runIf(process.env.BIG_TESTS)('matches crc32 of a real 4 GiB + 7 B second part', () => {
    const piece = randomBytes(64 << 20);
    const head = Buffer.from('head');
    let whole = crc32(head);
    let tail = 0;
    for (let i = 0; i < 64; i++) {
      whole = crc32(piece, whole);
      tail = crc32(piece, tail);
    }
    const seven = Buffer.from('seven!!');
    whole = crc32(seven, whole);
    tail = crc32(seven, tail);
    expect(crc32Combine(crc32(head), tail, 2 ** 32 + 7)).toBe(whole);
  }, 120_000);
});

describe('gzip framing', () => {
  it('has the documented header, end block and trailer', () => {
    expect(GZIP_HEADER.toString('hex')).toBe('1f8b08000000000000ff');
    expect(DEFLATE_END.toString('hex')).toBe('0300');
    expect(gzipTrailer(0xdeadbeef, 10).toString('hex')).toBe('efbeadde0a000000');
    expect(gzipTrailer(-1, 2 ** 32 + 5).toString('hex')).toBe('ffffffff05000000');
    expect(gzipMemberLength([])).toBe(20);
    expect(gzipMemberLength(new Set([5, 100]))).toBe(125);
    expect(combineCrcs([])).toBe(0);
  });

  it('a member with no segments decodes to nothing', () => {
    const member = buildMember([]);
    expect(member.length).toBe(20);
    expect(gunzipSync(member).length).toBe(0);
  });

  it('a member from random, text and empty blocks decodes to their concatenation', async () => {
    const blocks = [randomBytes(200_000), textLike(300_000), Buffer.alloc(0), randomBytes(1), textLike(70_000), Buffer.alloc(0)];
    const segments = await Promise.all(blocks.map((b) => compressSegment(b)));
    const member = buildMember(segments);
    const content = Buffer.concat(blocks);
    expect(member.length).toBe(gzipMemberLength(segments.map((s) => s.data.length)));
    expect(gunzipSync(member).equals(content)).toBe(true);
    // The deflate body ends in a real final block: a strict raw inflate finishes without complaint.
    expect(inflateRawSync(member.subarray(10, -8)).equals(content)).toBe(true);
  });

  it('a member from chunked data ends exactly where it claims', async () => {
    const content = Buffer.concat([textLike(3 << 20), randomBytes(2 << 20), textLike(1 << 20)]);
    const segments = await Promise.all(chunkBuffer(content, DEFAULT_CHUNKER).map((b) => compressSegment(b)));
    const member = buildMember(segments);
    expect(combineCrcs(segments)).toBe(crc32(content));
    // Two members back to back decode to the content twice only if the first ends exactly at its trailer.
    expect(gunzipSync(Buffer.concat([member, member])).equals(Buffer.concat([content, content]))).toBe(true);
  });

  it('decodes with Python gzip, which rejects trailing garbage and bad trailers', async () => {
    const blocks = [textLike(100_000), randomBytes(150_000), Buffer.alloc(0), textLike(5)];
    const member = buildMember(await Promise.all(blocks.map((b) => compressSegment(b))));
    const script = 'import gzip,sys; sys.stdout.buffer.write(gzip.decompress(sys.stdin.buffer.read()))';
    const run = (input: Buffer) => spawnSync('python3', ['-c', script], { input, maxBuffer: 64 << 20 });
    const ok = run(member);
    expect(ok.status, ok.stderr.toString()).toBe(0);
    expect(ok.stdout.equals(Buffer.concat(blocks))).toBe(true);
    // Sanity check that Python is strict: a wrong CRC in the trailer fails.
    const broken = Buffer.from(member);
    broken[broken.length - 8] ^= 1;
    expect(run(broken).status).not.toBe(0);
  });
});
