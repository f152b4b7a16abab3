import { randomBytes } from 'node:crypto';
import { constants, crc32, deflateRawSync, inflateRawSync } from 'node:zlib';
import { describe, it, expect } from 'vitest';
import { compressSegment, inflateSegment, looksIncompressible } from '../../src/store/segment.js';

/** Text-like, compressible bytes: words from a small vocabulary picked by a seeded PRNG. */
function textLike(length: number, seed = 1): Buffer {
  const words = ['filetracker', 'proxy', 'block', 'the', 'of', 'deflate', 'segment', 'gzip', '\n', 'int main() {', '}', '42'];
  let s = seed;
  const parts: string[] = [];
  let total = 0;
  while (total < length) {
    s = (Math.imul(s, 1_103_515_245) + 12_345) >>> 0;
    const word = words[(s >>> 16) % words.length];
    parts.push(word, ' ');
    total += word.length + 1;
  }
  return Buffer.from(parts.join('')).subarray(0, length);
}

/** LEN 0 / NLEN 0xffff of the empty stored block a full flush emits; its 3 header bits share the byte before. */
const FULL_FLUSH_TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);

describe('compressSegment', () => {
  it.each([
    ['empty', Buffer.alloc(0)],
    ['one byte', Buffer.from('x')],
    ['small random', randomBytes(100)],
    ['text 128 KiB', textLike(131_072)],
    ['random 128 KiB', randomBytes(131_072)],
    ['random 64 KiB (two stored blocks)', randomBytes(65_536)],
    ['zeros 512 KiB', Buffer.alloc(524_288)],
    ['text then random', Buffer.concat([textLike(70_000), randomBytes(70_000)])],
  ])('round-trips %s with its CRC and size', async (_name, block) => {
    const segment = await compressSegment(block);
    expect(segment.size).toBe(block.length);
    expect(segment.crc32).toBe(crc32(block));
    expect(inflateSegment(segment.data).equals(block)).toBe(true);
    // A full flush ends on a byte boundary with an empty stored block.
    expect(segment.data.subarray(-4).equals(FULL_FLUSH_TAIL)).toBe(true);
  });

  it('leaves out the final-block bit, so segments chain', async () => {
    const a = Buffer.from('first block ');
    const b = randomBytes(5000);
    const [sa, sb] = await Promise.all([compressSegment(a), compressSegment(b)]);
    // Without a final block, a strict decoder reports a truncated stream...
    expect(() => inflateRawSync(sa.data)).toThrow(/unexpected end/);
    // ...and with one appended, the concatenation is one complete stream.
    const stream = Buffer.concat([sa.data, sb.data, Buffer.from([0x03, 0x00])]);
    expect(inflateRawSync(stream, { finishFlush: constants.Z_FINISH }).equals(Buffer.concat([a, b]))).toBe(true);
  });

  it('compresses text and stores random data at level 0', async () => {
    const text = await compressSegment(textLike(131_072));
    expect(text.data.length).toBeLessThan(131_072 / 3);
    const random = await compressSegment(randomBytes(131_072));
    // Stored blocks: BTYPE 00 in the first header, about 5 bytes per 64 KiB of overhead.
    expect(random.data[0] & 0b110).toBe(0);
    expect(random.data.length).toBeLessThanOrEqual(131_072 + 5 * 3 + 5);
  });

  it('falls back to stored blocks when deflate does not shrink the data', async () => {
    const block = randomBytes(200); // below the probe threshold, so only the size check catches it
    expect(looksIncompressible(block)).toBe(false);
    const segment = await compressSegment(block, 9);
    expect(segment.data[0] & 0b110).toBe(0);
    expect(inflateSegment(segment.data).equals(block)).toBe(true);
  });

  it('writes stored blocks that zlib reads, split at 64 KiB - 1', async () => {
    for (const size of [0, 17, 65_534, 65_535, 65_536, 131_070, 131_071, 300_000]) {
      const block = randomBytes(size);
      const { data } = await compressSegment(block, 0);
      expect(data.length).toBe(size + 5 * Math.ceil(size / 65_535) + 5);
      expect(inflateSegment(data).equals(block)).toBe(true);
      expect(inflateRawSync(Buffer.concat([data, Buffer.from([0x03, 0x00])])).equals(block)).toBe(true);
    }
    // Byte for byte what zlib's level 0 writes, where zlib does not split differently.
    const small = randomBytes(1000);
    const zlibStored = deflateRawSync(small, { level: 0, finishFlush: constants.Z_FULL_FLUSH });
    expect((await compressSegment(small, 0)).data.equals(zlibStored)).toBe(true);
  });

  it('honours level 0 and rejects invalid levels', async () => {
    const block = textLike(10_000);
    const stored = await compressSegment(block, 0);
    expect(stored.data.length).toBeGreaterThan(block.length);
    expect(inflateSegment(stored.data).equals(block)).toBe(true);
    await expect(compressSegment(block, 10)).rejects.toThrow(RangeError);
    await expect(compressSegment(block, 1.5)).rejects.toThrow(RangeError);
  });

  it('compresses many blocks in parallel', async () => {
    const blocks = Array.from({ length: 32 }, (_, i) => (i % 2 ? randomBytes(150_000) : textLike(150_000, i)));
    const segments = await Promise.all(blocks.map((b) => compressSegment(b)));
    segments.forEach((s, i) => expect(inflateSegment(s.data).equals(blocks[i])).toBe(true));
  });
});

describe('looksIncompressible', () => {
  it('flags random data and passes text, zeros and tiny blocks', () => {
    expect(looksIncompressible(randomBytes(131_072))).toBe(true);
    expect(looksIncompressible(randomBytes(9000))).toBe(true);
    // Under 8 KiB the probe would cost as much as compressing: such blocks are deflated and
    // fall back to stored only when deflate does not shrink them.
    expect(looksIncompressible(randomBytes(5000))).toBe(false);
    expect(looksIncompressible(textLike(131_072))).toBe(false);
    expect(looksIncompressible(Buffer.alloc(131_072))).toBe(false);
    expect(looksIncompressible(randomBytes(100))).toBe(false);
  });

  it('lets deflate decide when the bytes look random but repeat within the sample', () => {
    // 1 KiB of random bytes, repeated: a high byte entropy (about 7.8), yet deflate shrinks it.
    const unit = randomBytes(1024);
    const repeated = Buffer.concat(Array.from({ length: 64 }, () => unit));
    expect(looksIncompressible(repeated)).toBe(false);
    // Random 7-bit bytes: entropy near 7, between the two bounds; Huffman codes save about 12%.
    const sevenBits = Buffer.from(randomBytes(65_536).map((b) => b & 0x7f));
    expect(looksIncompressible(sevenBits)).toBe(false);
  });

  it('samples the middle, skipping a compressible header', () => {
    const block = Buffer.concat([Buffer.alloc(4096), randomBytes(131_072)]);
    expect(looksIncompressible(block)).toBe(true);
  });
});
