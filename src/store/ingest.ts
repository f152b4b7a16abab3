// The upload pipeline: body -> (gunzip) -> whole-content SHA-256 -> FastCDC -> per-block hash,
// existence check, compression and write, several blocks in flight. Nothing is buffered beyond
// `concurrency` blocks; the body pauses while all permits are taken.
import { createHash } from 'node:crypto';
import { Transform, Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, crc32 } from 'node:zlib';
import type { BlobStore } from '../blobs/blob-store.js';
import { AppError } from '../errors.js';
import type { BlockRef, MetadataStore } from '../meta/metadata-store.js';
import { Semaphore } from '../util/semaphore.js';
import { createChunkerStream, type ChunkerParams } from './chunker.js';
import { combineCrcs } from './gzip-member.js';
import { blockKey } from './keys.js';
import { compressSegment } from './segment.js';

export interface IngestOptions {
  gzip: boolean;
  chunker: ChunkerParams;
  /** Blocks hashed, compressed or written at once per upload. */
  concurrency: number;
  /** deflate level for compressible blocks (incompressible ones are stored at level 0). */
  compressionLevel: number;
  blobs: BlobStore;
  meta: MetadataStore;
  signal?: AbortSignal;
}

export interface IngestResult {
  /** SHA-256 (hex) of the uncompressed content */
  hash: string;
  logicalSize: number;
  storedSize: number;
  crc32: number;
  blocks: BlockRef[];
  /** Blocks the store already had, so this upload did not write them. */
  reused: string[];
  /** Blocks this upload wrote. */
  written: number;
  /** Stored bytes of the blocks this upload wrote. */
  storedBytesWritten: number;
}

/** Streams `body` into the blob store as blocks; commits no metadata. */
export async function ingest(body: Readable, o: IngestOptions): Promise<IngestResult> {
  const whole = createHash('sha256');
  let logicalSize = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      whole.update(chunk);
      logicalSize += chunk.length;
      cb(null, chunk);
    },
  });

  const blocks: BlockRef[] = [];
  const reused = new Set<string>();
  let written = 0;
  let storedBytesWritten = 0;
  const started = new Map<string, Promise<number>>();
  const sem = new Semaphore(o.concurrency);
  let failure: unknown = null;

  const storeBlock = async (hash: string, data: Buffer): Promise<number> => {
    try {
      const known = await o.meta.findBlocks([hash]);
      const storedSize = known.get(hash);
      if (storedSize !== undefined) {
        reused.add(hash);
        return storedSize;
      }
      const segment = await compressSegment(data, o.compressionLevel);
      await o.blobs.put(blockKey(hash), segment.data, { signal: o.signal });
      written++;
      storedBytesWritten += segment.data.length;
      return segment.data.length;
    } catch (err) {
      failure ??= err;
      throw err;
    } finally {
      sem.release();
    }
  };

  const sink = new Writable({
    objectMode: true,
    write(chunk: Buffer, _enc, cb) {
      if (failure) return cb(failure as Error);
      const hash = createHash('sha256').update(chunk).digest('hex');
      const ref: BlockRef = { hash, size: chunk.length, storedSize: -1, crc32: crc32(chunk) };
      blocks.push(ref);
      if (started.has(hash)) return cb();
      sem.acquire().then(() => {
        const p = storeBlock(hash, chunk);
        p.catch(() => {}); // observed in final()
        started.set(hash, p);
        cb(failure as Error | null);
      }, cb);
    },
    final(cb) {
      Promise.allSettled(started.values()).then((results) => {
        const rejected = results.find((r) => r.status === 'rejected');
        cb(rejected ? (rejected as PromiseRejectedResult).reason : null);
      }, cb);
    },
  });

  const stages: Array<NodeJS.ReadableStream | NodeJS.WritableStream> = [body];
  if (o.gzip) stages.push(createGunzip());
  stages.push(tap, createChunkerStream(o.chunker), sink);
  try {
    await (pipeline as (...s: unknown[]) => Promise<void>)(...stages, o.signal ? { signal: o.signal } : {});
  } catch (err) {
    // Let in-flight writes finish (they are harmless orphans for the cleaner) before reporting.
    await Promise.allSettled(started.values());
    throw classifyIngestError(err, o.signal);
  }

  let storedSize = 0;
  for (const b of blocks) {
    b.storedSize = await started.get(b.hash)!;
    storedSize += b.storedSize;
  }
  return {
    hash: whole.digest('hex'),
    logicalSize,
    storedSize,
    crc32: combineCrcs(blocks),
    blocks,
    reused: [...reused],
    written,
    storedBytesWritten,
  };
}

function classifyIngestError(err: unknown, signal?: AbortSignal): unknown {
  if (err instanceof AppError) return err;
  const e = err as NodeJS.ErrnoException;
  if (signal?.aborted || e?.code === 'ABORT_ERR' || e?.code === 'ECONNRESET' || e?.code === 'ERR_STREAM_PREMATURE_CLOSE') {
    return new AppError('CLIENT_ABORTED', 'the client closed the connection before the body ended', { cause: err });
  }
  if (typeof e?.code === 'string' && e.code.startsWith('Z_')) {
    return new AppError('BAD_BODY', `body is not valid gzip: ${e.message}`, { cause: err });
  }
  return err;
}
