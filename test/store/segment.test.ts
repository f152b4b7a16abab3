import { createHash, randomBytes } from 'node:crypto';
import { constants, crc32, deflateRawSync, inflateRawSync } from 'node:zlib';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { describe, it, expect } from 'vitest';
import { NATIVE_MIN_BYTES, nativeDeflate, nativeDeflateMissing } from '../../src/store/native-deflate.js';
import {
  compressSegment,
  defaultDeflaterName,
  inflateSegment,
  libdeflateDeflater,
  looksIncompressible,
  zlibDeflater,
  type SegmentDeflater,
} from '../../src/store/segment.js';

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

/** The addon as node-gyp builds it (what src/store/native-deflate.ts loads). */
const addonPath = fileURLToPath(new URL('../../build/Release/s3dedup_deflate.node', import.meta.url));

/** LEN 0 / NLEN 0xffff of the empty stored block a full flush emits; its 3 header bits share the byte before. */
const FULL_FLUSH_TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);

describe('the libdeflate addon', () => {
  it('is built and is what segments are deflated with', () => {
    // npm ci builds it (binding.gyp); without it the server falls back to zlib and says so.
    expect(nativeDeflateMissing, nativeDeflateMissing).toBeUndefined();
    expect(nativeDeflate).not.toBeNull();
    expect(defaultDeflaterName).toBe('libdeflate');
  });

  it('refuses what it cannot compress safely, before starting', () => {
    const addon = nativeDeflate!;
    const input = textLike(1000);
    const out = Buffer.alloc(addon.bound(input.length));
    expect(addon.bound(input.length)).toBeGreaterThan(input.length);
    expect(() => addon.compress(input, out, 0)).toThrow(/level/);
    expect(() => addon.compress(input, out, 13)).toThrow(/level/);
    expect(() => addon.compress(input.subarray(0, NATIVE_MIN_BYTES - 1), out, 6)).toThrow(/shorter/);
    expect(() => addon.compress(input, out.subarray(0, input.length), 6)).toThrow(/bound/);
    expect(() => addon.compress('text' as unknown as Buffer, out, 6)).toThrow(/Buffers/);
  });

  it('ends every stream on a byte boundary, whatever bit its last block ends on', async () => {
    // 300 inputs of varied kinds and sizes put the last block's end on every bit position; each
    // must end with the empty stored block, and all of them chained must decode as one stream.
    const deflate = libdeflateDeflater(nativeDeflate!);
    const inputs = Array.from({ length: 300 }, (_, i) => {
      const size = NATIVE_MIN_BYTES + ((i * 7919) % 20_000);
      return i % 3 === 0 ? randomBytes(size) : i % 3 === 1 ? textLike(size, i) : Buffer.concat([textLike(size, i), randomBytes(size)]);
    });
    const outputs = await Promise.all(inputs.map((b, i) => deflate(b, 1 + (i % 12))));
    for (const out of outputs) expect(out.subarray(-4).equals(FULL_FLUSH_TAIL)).toBe(true);
    const stream = Buffer.concat([...outputs, Buffer.from([0x03, 0x00])]);
    expect(inflateRawSync(stream).equals(Buffer.concat(inputs))).toBe(true);
  });

  it('keeps the process alive while a block compresses, and not once it is done', () => {
    // The addon's threads finish jobs through a thread-safe function that is referenced only
    // while jobs are out: the promise settles before exit, and the process then exits by itself.
    const script = `
      const addon = require(${JSON.stringify(addonPath)});
      const input = Buffer.alloc(1 << 20, 'ab');
      const out = Buffer.alloc(addon.bound(input.length));
      addon.compress(input, out, 6).then((n) => console.log('compressed', n));`;
    const run = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20_000 });
    expect(run.error).toBeUndefined();
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^compressed \d+\n$/);
  });

  it('compresses in worker threads too, each with its own completions', async () => {
    const script = `
      const { parentPort } = require('node:worker_threads');
      const { inflateRawSync } = require('node:zlib');
      const addon = require(${JSON.stringify(addonPath)});
      const input = Buffer.from('worker '.repeat(20000));
      const out = Buffer.alloc(addon.bound(input.length));
      addon.compress(input, out, 6).then((n) => {
        const stream = Buffer.concat([out.subarray(0, n), Buffer.from([3, 0])]);
        parentPort.postMessage(inflateRawSync(stream).equals(input));
      });`;
    const results = await Promise.all(
      [1, 2, 3].map(
        () =>
          new Promise((resolve, reject) => {
            const worker = new Worker(script, { eval: true });
            worker.once('message', resolve);
            worker.once('error', reject);
          }),
      ),
    );
    expect(results).toEqual([true, true, true]);
    // ...while the main thread's own jobs still complete.
    const block = textLike(200_000);
    expect(inflateSegment(await libdeflateDeflater(nativeDeflate!)(block, 6)).equals(block)).toBe(true);
  });

  it('hashes blocks with hashBlock: the SHA-256 of crypto and the CRC-32 of zlib', async () => {
    const addon = nativeDeflate!;
    const blocks = [Buffer.alloc(0), Buffer.from('x'), randomBytes(131_072), textLike(300_000), randomBytes(1 << 20)];
    const digests = blocks.map(() => Buffer.alloc(32));
    const crcs = await Promise.all(blocks.map((b, i) => addon.hashBlock(b, digests[i])));
    blocks.forEach((b, i) => {
      expect(digests[i].toString('hex')).toBe(createHash('sha256').update(b).digest('hex'));
      expect(crcs[i]).toBe(crc32(b));
    });
    expect(() => addon.hashBlock(blocks[1], Buffer.alloc(31))).toThrow(/32 bytes/);
  });

  it('hashes a content fed in order with contentHashUpdate, while other jobs pass its waiting updates', async () => {
    const addon = nativeDeflate!;
    // Three contents in many uneven pieces, among deflates: each hash gets its own bytes in the
    // order they were submitted, though the threads take the jobs as they come free.
    const contents = [randomBytes(32 << 20), textLike(8 << 20), Buffer.alloc(0)];
    const states = contents.map(() => addon.contentHash());
    // Deflates that keep every thread busy while the updates queue up: then the threads take
    // updates of the same content together, which only the addon's ordering keeps apart.
    const filler = textLike(100_000);
    const deflate = libdeflateDeflater(addon);
    const pending: Array<Promise<unknown>> = [];
    // One content's pieces after another's, queued faster than they run (the data is made first):
    // two threads free at once find two pieces of the same content at the head of the queue, and
    // one of them must take a later content's instead.
    contents.forEach((c, i) => {
      for (let at = 0, n = 0; at < c.length; n++) {
        const end = Math.min(c.length, at + 1 + ((n * 7919 + i * 104_729) % 200_000));
        pending.push(addon.contentHashUpdate(states[i], c.subarray(at, end)));
        if (n % 5 === 0) pending.push(deflate(filler, 6));
        at = end;
      }
    });
    expect(() => addon.contentHashDigest(states[0], Buffer.alloc(32))).toThrow(/still running/);
    await Promise.all(pending);
    contents.forEach((c, i) => {
      const digest = Buffer.alloc(32);
      addon.contentHashDigest(states[i], digest);
      expect(digest.toString('hex')).toBe(createHash('sha256').update(c).digest('hex'));
    });
    expect(() => addon.contentHashUpdate({} as never, Buffer.alloc(1))).toThrow(/contentHash\(\)/);
    expect(() => addon.contentHashUpdate(states[0], 'text' as never)).toThrow(/Buffer/);
    expect(() => addon.contentHashDigest(states[0], Buffer.alloc(31))).toThrow(/32 bytes/);
  });

  it('compresses on the calling thread with compressSync, with the same checks', () => {
    const addon = nativeDeflate!;
    const input = textLike(4096);
    const out = Buffer.alloc(addon.bound(input.length));
    const n = addon.compressSync(input, out, 6);
    expect(out.subarray(n - 4, n).equals(FULL_FLUSH_TAIL)).toBe(true);
    expect(inflateSegment(out.subarray(0, n)).equals(input)).toBe(true);
    expect(() => addon.compressSync(input, out, 0)).toThrow(/level/);
    expect(() => addon.compressSync(input.subarray(0, NATIVE_MIN_BYTES - 1), out, 6)).toThrow(/shorter/);
    expect(() => addon.compressSync(input, out.subarray(0, input.length), 6)).toThrow(/bound/);
  });

  it('inflates exactly one complete stream of exactly the output size, and nothing else', () => {
    const addon = nativeDeflate!;
    const content = textLike(5000);
    const stream = deflateRawSync(content);
    const out = Buffer.alloc(content.length);
    expect(addon.inflateExact(stream, out)).toBe(true);
    expect(out.equals(content)).toBe(true);
    expect(addon.inflateExact(Buffer.concat([stream, Buffer.from([0])]), Buffer.alloc(content.length))).toBe(false); // bytes after the end
    expect(addon.inflateExact(stream, Buffer.alloc(content.length - 1))).toBe(false); // content longer
    expect(addon.inflateExact(stream, Buffer.alloc(content.length + 1))).toBe(false); // content shorter
    expect(addon.inflateExact(stream.subarray(0, stream.length - 1), Buffer.alloc(content.length))).toBe(false); // truncated
    expect(addon.inflateExact(randomBytes(64), Buffer.alloc(content.length))).toBe(false);
    expect(addon.inflateExact(Buffer.alloc(0), Buffer.alloc(0))).toBe(false); // no stream at all
    expect(addon.inflateExact(deflateRawSync(Buffer.alloc(0)), Buffer.alloc(0))).toBe(true);
    expect(() => addon.inflateExact('x' as unknown as Buffer, out)).toThrow(/Buffers/);
  });

  it('compresses text about as well as zlib at the same level', async () => {
    // Both are deterministic. On this 12-word text libdeflate's level 6 output is 6.6% larger
    // than zlib's; on the bench's real source (TypeScript tars) 0.6% (bench/README.md).
    const block = textLike(131_072);
    const [ours, zlibs] = await Promise.all([libdeflateDeflater(nativeDeflate!)(block, 6), zlibDeflater(block, 6)]);
    expect(ours.length).toBeLessThan(zlibs.length * 1.1);
    expect(ours.length).toBeGreaterThan(zlibs.length * 0.9);
  });
});

const deflaters: [string, SegmentDeflater][] = [
  ['libdeflate', nativeDeflate ? libdeflateDeflater(nativeDeflate) : () => Promise.reject(new Error(nativeDeflateMissing))],
  ['zlib', zlibDeflater],
];

describe.each(deflaters)('compressSegment with %s', (_deflaterName, deflater) => {
  const compressSegmentWith = (block: Buffer, level?: number) => compressSegment(block, level, crc32(block), deflater);

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
    const segment = await compressSegmentWith(block);
    expect(segment.size).toBe(block.length);
    expect(segment.crc32).toBe(crc32(block));
    expect(inflateSegment(segment.data).equals(block)).toBe(true);
    // A full flush ends on a byte boundary with an empty stored block.
    expect(segment.data.subarray(-4).equals(FULL_FLUSH_TAIL)).toBe(true);
  });

  it('leaves out the final-block bit, so segments chain', async () => {
    const a = Buffer.from('first block ');
    const b = randomBytes(5000);
    const [sa, sb] = await Promise.all([compressSegmentWith(a), compressSegmentWith(b)]);
    // Without a final block, a strict decoder reports a truncated stream...
    expect(() => inflateRawSync(sa.data)).toThrow(/unexpected end/);
    // ...and with one appended, the concatenation is one complete stream.
    const stream = Buffer.concat([sa.data, sb.data, Buffer.from([0x03, 0x00])]);
    expect(inflateRawSync(stream, { finishFlush: constants.Z_FINISH }).equals(Buffer.concat([a, b]))).toBe(true);
  });

  it('compresses text and stores random data at level 0', async () => {
    const text = await compressSegmentWith(textLike(131_072));
    expect(text.data.length).toBeLessThan(131_072 / 3);
    const random = await compressSegmentWith(randomBytes(131_072));
    // Stored blocks: BTYPE 00 in the first header, about 5 bytes per 64 KiB of overhead.
    expect(random.data[0] & 0b110).toBe(0);
    expect(random.data.length).toBeLessThanOrEqual(131_072 + 5 * 3 + 5);
  });

  it('falls back to stored blocks when deflate does not shrink the data', async () => {
    const block = randomBytes(200); // below the probe threshold, so only the size check catches it
    expect(looksIncompressible(block)).toBe(false);
    const segment = await compressSegmentWith(block, 9);
    expect(segment.data[0] & 0b110).toBe(0);
    expect(inflateSegment(segment.data).equals(block)).toBe(true);
  });

  it('writes stored blocks that zlib reads, split at 64 KiB - 1', async () => {
    for (const size of [0, 17, 65_534, 65_535, 65_536, 131_070, 131_071, 300_000]) {
      const block = randomBytes(size);
      const { data } = await compressSegmentWith(block, 0);
      expect(data.length).toBe(size + 5 * Math.ceil(size / 65_535) + 5);
      expect(inflateSegment(data).equals(block)).toBe(true);
      expect(inflateRawSync(Buffer.concat([data, Buffer.from([0x03, 0x00])])).equals(block)).toBe(true);
    }
    // Byte for byte what zlib's level 0 writes, where zlib does not split differently.
    const small = randomBytes(1000);
    const zlibStored = deflateRawSync(small, { level: 0, finishFlush: constants.Z_FULL_FLUSH });
    expect((await compressSegmentWith(small, 0)).data.equals(zlibStored)).toBe(true);
  });

  it('honours level 0 and rejects invalid levels', async () => {
    const block = textLike(10_000);
    const stored = await compressSegmentWith(block, 0);
    expect(stored.data.length).toBeGreaterThan(block.length);
    expect(inflateSegment(stored.data).equals(block)).toBe(true);
    await expect(compressSegmentWith(block, 10)).rejects.toThrow(RangeError);
    await expect(compressSegmentWith(block, 1.5)).rejects.toThrow(RangeError);
  });

  it('compresses many blocks in parallel', async () => {
    const blocks = Array.from({ length: 32 }, (_, i) => (i % 2 ? randomBytes(150_000) : textLike(150_000, i)));
    const segments = await Promise.all(blocks.map((b) => compressSegmentWith(b)));
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
