// The physical limits the proxy's numbers are bounded by, measured alone on this machine: the
// stages of the PUT and GET paths (CDC, SHA-256, CRC-32, deflate, inflate), each on one core
// unless it says otherwise. MB = 10^6 bytes.
import { createHash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { crc32, deflateRawSync, gunzipSync, gzipSync, inflateRawSync, constants } from 'node:zlib';
import { chunkBuffer, DEFAULT_CHUNKER, jsCutSearch } from '../../src/store/chunker.js';
import { nativeDeflate } from '../../src/store/native-deflate.js';
import { compressSegment, defaultDeflaterName, libdeflateDeflater, zlibDeflater, type SegmentDeflater } from '../../src/store/segment.js';
import { randomLike, textLike } from './data.js';

export interface Limit {
  stage: string;
  mbps: number;
  note?: string;
}

/** MB/s of the fastest of `runs` timed runs of `fn` over `bytes` (the first runs include JIT warm-up). */
export async function best(bytes: number, runs: number, fn: () => unknown): Promise<number> {
  let bestMs = Infinity;
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await fn();
    bestMs = Math.min(bestMs, performance.now() - t);
  }
  return bytes / 1e6 / (bestMs / 1000);
}

export async function measureLimits(size: number, runs: number): Promise<{ limits: Limit[]; bounds: Record<string, number> }> {
  const random = randomLike(size, 5);
  const text = textLike(size, 6);
  const textBlocks = chunkBuffer(text, DEFAULT_CHUNKER);
  const randomBlocks = chunkBuffer(random, DEFAULT_CHUNKER);
  const textGz = gzipSync(text, { level: 6 });
  const textSegs = textBlocks.map((b) => deflateRawSync(b, { level: 6, finishFlush: constants.Z_FULL_FLUSH }));
  const limits: Limit[] = [];
  const add = async (stage: string, fn: () => unknown, note?: string, bytes = size) => {
    limits.push({ stage, mbps: await best(bytes, runs, fn), note });
  };
  // The server's chunker: its cut search in the addon when it is built, else in JavaScript.
  await add('FastCDC (default params), random', () => chunkBuffer(random, DEFAULT_CHUNKER));
  await add('FastCDC (default params), text', () => chunkBuffer(text, DEFAULT_CHUNKER));
  if (nativeDeflate) await add('FastCDC, cut search in JavaScript (no addon), random', () => chunkBuffer(random, DEFAULT_CHUNKER, jsCutSearch));
  await add('SHA-256, one stream', () => createHash('sha256').update(random).digest());
  await add('SHA-256 per 128 KiB block', () => {
    for (const b of randomBlocks) createHash('sha256').update(b).digest();
  });
  await add('CRC-32 per block', () => {
    for (const b of randomBlocks) crc32(b);
  });
  // One block at a time, so each deflater runs on one thread (libdeflate's on the addon's).
  const deflateEach = async (deflate: SegmentDeflater, level: number) => {
    let out = 0;
    for (const b of textBlocks) out += (await deflate(b, level)).length;
    return out;
  };
  const ratio = async (deflate: SegmentDeflater, level: number) => `ratio ${((await deflateEach(deflate, level)) / size).toFixed(3)}`;
  await add('deflate level 6 (zlib), text, per block', () => deflateEach(zlibDeflater, 6), await ratio(zlibDeflater, 6));
  if (nativeDeflate) {
    const libdeflate = libdeflateDeflater(nativeDeflate);
    await add('deflate level 6 (libdeflate), text, per block', () => deflateEach(libdeflate, 6), await ratio(libdeflate, 6));
    await add('deflate level 1 (libdeflate), text, per block', () => deflateEach(libdeflate, 1), await ratio(libdeflate, 1));
  } else {
    await add('deflate level 1 (zlib), text, per block', () => deflateEach(zlibDeflater, 1), await ratio(zlibDeflater, 1));
  }
  await add('inflate (gunzip) of the text', () => gunzipSync(textGz), 'logical bytes out');
  await add('inflate per segment, text', () => {
    for (const s of textSegs) inflateRawSync(s, { finishFlush: constants.Z_SYNC_FLUSH });
  }, 'logical bytes out');
  const threads = nativeDeflate ? `libdeflate, ${availableParallelism()} threads` : `zlib, ${process.env.UV_THREADPOOL_SIZE ?? 4} pool threads`;
  await add(`compressSegment, text, all blocks in parallel (${threads}, ${availableParallelism()} CPUs)`, () =>
    Promise.all(textBlocks.map((b) => compressSegment(b))),
  );
  await add('compressSegment, random (stored, probe only), parallel', () => Promise.all(randomBlocks.map((b) => compressSegment(b))));

  const rate = (name: string) => limits.find((l) => l.stage.startsWith(name))!.mbps;
  const chain = (...rates: number[]) => 1 / rates.reduce((s, r) => s + 1 / r, 0);
  // Per PUT byte: whole-file SHA-256, CDC, per-block SHA-256 and CRC-32. With the addon only CDC
  // is on the event loop (the hashes run on its threads, as the deflates do; gunzip runs on the
  // libuv pool); without it all four are. On 2 cores the other threads get what the loop leaves.
  const hashing = [rate('SHA-256, one stream'), rate('SHA-256 per 128 KiB block'), rate('CRC-32')];
  const cdcRandom = rate('FastCDC (default params), random');
  const cdcText = rate('FastCDC (default params), text');
  const loopRandom = nativeDeflate ? cdcRandom : chain(cdcRandom, ...hashing);
  const loopText = nativeDeflate ? cdcText : chain(cdcText, ...hashing);
  const cores = availableParallelism();
  const spread = (...rates: number[]) => cores / rates.reduce((sum, r) => sum + 1 / r, 0);
  const textWork = (level: number) => [cdcText, ...hashing, rate('inflate (gunzip)'), rate(`deflate level ${level} (${defaultDeflaterName})`)];
  const bounds = {
    'PUT random (plain body): event-loop stages alone': loopRandom,
    'PUT random (plain body): hashing and CDC spread on all cores': Math.min(loopRandom, spread(cdcRandom, ...hashing)),
    'PUT text (gzip body): event loop, and all CPU work spread on all cores': Math.min(loopText, spread(...textWork(6))),
    'PUT text (gzip body), if blocks were deflated at level 1': Math.min(loopText, spread(...textWork(1))),
  };
  return { limits, bounds };
}
