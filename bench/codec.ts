// Throughput of the block codec stages on one process: `npx tsx bench/codec.ts` (MB = 10^6 bytes).
import { createHash, randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { crc32 } from 'node:zlib';
import { chunkBuffer, DEFAULT_CHUNKER } from '../src/store/chunker.js';
import { compressSegment } from '../src/store/segment.js';
import { textLike } from './lib/data.js';
import { best } from './lib/limits.js';

/** Input size per data set (64 MiB). */
const SIZE = 64 * 1024 * 1024;
/** Timed repetitions per stage; the best one is reported, as the first runs include JIT warm-up. */
const RUNS = 5;

async function measure(name: string, bytes: number, run: () => unknown): Promise<void> {
  console.log(`${name.padEnd(36)} ${(await best(bytes, RUNS, run)).toFixed(0).padStart(6)} MB/s`);
}

const random = randomBytes(SIZE);
const text = textLike(SIZE);
const randomBlocks = chunkBuffer(random, DEFAULT_CHUNKER);
const textBlocks = chunkBuffer(text, DEFAULT_CHUNKER);

console.log(
  `node ${process.version}, ${availableParallelism()} CPUs, UV_THREADPOOL_SIZE=${process.env.UV_THREADPOOL_SIZE ?? 4}, ` +
    `chunker ${JSON.stringify(DEFAULT_CHUNKER)}, mean block ${(SIZE / randomBlocks.length / 1024).toFixed(0)} KiB (random), ` +
    `${(SIZE / textBlocks.length / 1024).toFixed(0)} KiB (text)`,
);
await measure('chunking, random', SIZE, () => chunkBuffer(random, DEFAULT_CHUNKER));
await measure('chunking, text', SIZE, () => chunkBuffer(text, DEFAULT_CHUNKER));
await measure('sha-256 per block', SIZE, () => {
  for (const block of randomBlocks) createHash('sha256').update(block).digest();
});
await measure('crc32 per block', SIZE, () => {
  for (const block of randomBlocks) crc32(block);
});
for (const [name, blocks] of [['random', randomBlocks], ['text', textBlocks]] as const) {
  let stored = 0;
  await measure(`compressSegment, ${name} (all parallel)`, SIZE, async () => {
    const segments = await Promise.all(blocks.map((b) => compressSegment(b)));
    stored = segments.reduce((n, s) => n + s.data.length, 0);
  });
  console.log(`${''.padEnd(36)} ratio ${(stored / SIZE).toFixed(3)} (stored / original)`);
}
