// The deduplicating file store behind the Filetracker routes.
//
// Layout of the blob store (S3 bucket or local directory):
// - `s3dedup.json`       descriptor: layout version and chunker parameters (store/descriptor.ts);
// - `blocks/<sha256>`    one per distinct block (SHA-256 of the uncompressed bytes), holding a
//                        raw deflate segment that ends in a full flush, so the segments of a
//                        file concatenate into one deflate stream;
// - `maps/<sha256>`      one per distinct content (SHA-256 of the whole file): its block list;
//                        except for a content of exactly one block, whose block is already
//                        `blocks/<content sha256>` and whose row holds all a map would (sizes,
//                        CRC). Most Filetracker files are that small, and an object less per
//                        PUT is one file creation (local) or request (S3) less.
//                        A content that a PUT sent whole and that fits one block (at most the
//                        chunker's minimum; most Filetracker files) is instead stored here as one
//                        complete gzip member, the very bytes a GET sends (store/small-member.ts):
//                        its row says block_count 0 with stored_size > 0, and it has no blocks.
// Write order on PUT: missing blocks, then the map, then one metadata transaction that points
// the path at the content and bumps reference counts. A crash before the transaction leaves
// only unreferenced blobs, which the cleaner's full scan removes. Nothing is deleted inline:
// an overwrite or delete only decrements counts; the cleaner removes what reaches zero.
// GET sends one gzip member built from the stored segments (store/gzip-member.ts) without
// recompressing anything.
import { Readable } from 'node:stream';
import type { BlobStore } from '../blobs/blob-store.js';
import { AppError, BlobExistsError, BlobNotFoundError } from '../errors.js';
import type { LockManager } from '../locks/lock-manager.js';
import { contentKey, pathKey } from '../locks/lock-manager.js';
import type { Logger } from '../log.js';
import type { BlockRef, DeleteOutcome, FileWithContent, MetadataStore, PutOutcome } from '../meta/metadata-store.js';
import { retryable } from '../meta/file-for-read.js';
import type { ChunkerParams } from './chunker.js';
import { recordLockWait, recordUpload } from '../metrics/metrics.js';
import { Lru } from '../util/lru.js';
import { encodeContentMap } from './content-map.js';
import { DEFLATE_END, GZIP_HEADER, gzipMemberLength, gzipTrailer } from './gzip-member.js';
import { ingestBody, readsWhole } from './ingest.js';
import { isWholeMember, readSingleMember } from './small-member.js';
import { blockKey, extentKey, mapKey } from './keys.js';
import { planRuns, type Run } from './extent.js';
import { prefetch } from '../util/prefetch.js';

export interface FileStoreOptions {
  chunker: ChunkerParams;
  /** Blocks in flight per upload (compression + write). */
  uploadConcurrency: number;
  /** Blocks fetched ahead per download. */
  readAhead: number;
  /** An upload's new blocks go into extent objects of about this many bytes; 0: one object per block. */
  extentBytes: number;
  /** deflate level for compressible blocks, 1..9 */
  compressionLevel: number;
  /** Longest wait for a path/content lock, ms. */
  lockTimeoutMs: number;
  /** bytes of hot segments kept in memory for repeated reads; 0 disables */
  blockCacheBytes: number;
}

export const DEFAULT_FILE_STORE_OPTIONS: Omit<FileStoreOptions, 'chunker'> = {
  uploadConcurrency: 8,
  readAhead: 16,
  extentBytes: 0,
  compressionLevel: 6,
  lockTimeoutMs: 30_000,
  blockCacheBytes: 64 << 20, // 64 MiB
};

export interface PutRequest {
  path: string;
  /** Unix seconds */
  version: number;
  body: Readable;
  /** bytes the body has on the wire (Content-Length), when known */
  bodyLength?: number;
  /** true when the body is gzip (Content-Encoding: gzip) */
  gzip: boolean;
  /** hex SHA-256 the client claims for the uncompressed content */
  expectedSha256?: string;
  /** uncompressed size the client claims */
  expectedSize?: number;
  signal?: SignalSource;
}

/**
 * A request's abort signal, or a function that makes it: a GET answered from the block cache
 * or a PUT whose body is read whole never needs one, and making one per request was 5% of a
 * small GET's event loop and 3% of a small PUT's.
 */
export type SignalSource = AbortSignal | (() => AbortSignal);

const signalOf = (s: SignalSource | undefined): AbortSignal | undefined => (typeof s === 'function' ? s() : s);

/** Files up to this many bytes on the wire are answered from one buffer, not a stream (256 KiB). */
const SMALL_GET_BYTES = 262_144;

export interface StoredFile extends FileWithContent {
  /** exact length of the gzip member a GET sends */
  gzipLength: number;
}

/** Whether a content with these blocks gets a `maps/` object (see the layout above). */
export function needsMap(blocks: readonly BlockRef[]): boolean {
  return blocks.length !== 1;
}

function withGzipLength(f: FileWithContent): StoredFile {
  return { ...f, gzipLength: isWholeMember(f) ? f.storedSize : gzipMemberLength([f.storedSize]) };
}

export class FileStore {
  /** Hot segments by blob key, bounded in bytes: a key names its content, so none goes stale. */
  private readonly cache: Lru<string, Buffer>;

  constructor(
    private readonly meta: MetadataStore,
    private readonly blobs: BlobStore,
    private readonly locks: LockManager,
    private readonly options: FileStoreOptions,
    private readonly log: Logger,
  ) {
    this.cache = new Lru(options.blockCacheBytes);
  }

  /** Stores the body under `path` at `version` (ignored when a newer version stands). */
  async put(req: PutRequest): Promise<PutOutcome & { contentHash: string; blocksWritten: number; blocksReused: number }> {
    // The watermark is read before any existence check: the commit proves nothing was collected
    // after it. A streamed body reads it before its first block lookup; a small one, which looks
    // up nothing before its content, reads it with that check in one query.
    let watermark: Promise<number> | undefined;
    const beforeLookup = () => (watermark ??= this.meta.gcWatermark());
    // A body read whole sees a client that leaves as an error of the body itself, and once every
    // byte has arrived the upload may as well complete: only a streamed body needs the abort
    // signal, whose making was 3% of a small PUT's profile.
    const signal = readsWhole(req.bodyLength) ? undefined : signalOf(req.signal);
    const result = await ingestBody(req.body, req.bodyLength, {
      gzip: req.gzip,
      chunker: this.options.chunker,
      concurrency: this.options.uploadConcurrency,
      compressionLevel: this.options.compressionLevel,
      extentBytes: this.options.extentBytes,
      blobs: this.blobs,
      meta: this.meta,
      beforeLookup,
      signal,
    });
    if (req.expectedSize !== undefined && req.expectedSize !== result.logicalSize) {
      throw new AppError('SIZE_MISMATCH', `Logical-Size says ${req.expectedSize} bytes but the body has ${result.logicalSize}`);
    }
    if (req.expectedSha256 !== undefined && req.expectedSha256.toLowerCase() !== result.hash) {
      throw new AppError('CHECKSUM_MISMATCH', `SHA256-Checksum ${req.expectedSha256} does not match the body (${result.hash})`);
    }
    const { startSeq, contentExists } = watermark
      ? { startSeq: await watermark, contentExists: await this.meta.hasContent(result.hash) }
      : await this.meta.watermarkAndContent(result.hash);
    const mapWritten = !contentExists;
    let storedSize = result.storedSize;
    let storedBytesWritten = result.storedBytesWritten;
    if (mapWritten && result.member) {
      const put = await this.putMember({ ...result, member: result.member }, signal);
      storedSize = put.storedSize;
      if (put.written) storedBytesWritten += storedSize;
    } else if (mapWritten && needsMap(result.blocks)) {
      await this.blobs.put(mapKey(result.hash), encodeContentMap(result.hash, result.logicalSize, result.crc32, result.blocks), {
        signal,
      });
    }
    const outcome = await this.locked(
      [pathKey(req.path), contentKey(result.hash)],
      () =>
        this.meta.commitPut(
          req.path,
          req.version,
          { hash: result.hash, logicalSize: result.logicalSize, storedSize, crc32: result.crc32, blocks: result.blocks },
          { startSeq, mapWritten },
        ),
      signal,
    );
    recordUpload({
      logicalBytes: result.logicalSize,
      storedBytesWritten,
      blocksWritten: result.written,
      blocksReused: result.reused.length,
    });
    this.log.debug(
      { path: req.path, version: req.version, applied: outcome.applied, size: result.logicalSize, blocks: result.blocks.length, written: result.written },
      'put',
    );
    return { ...outcome, contentHash: result.hash, blocksWritten: result.written, blocksReused: result.reused.length };
  }

  /**
   * Writes a whole-member content unless an object is there already, and returns the stored
   * size of the one that stays. Only create: two uploads of one content may carry different
   * gzip streams of it (clients compress differently), and the content row must describe the
   * object readers get. One already there is read back and must be a member of this very
   * content (a concurrent upload's, or one whose upload crashed before its commit); anything
   * else there (a map an older build wrote for a one-block content, left by a crash) is
   * refused with a 503 until the cleaner's full scan removes it as an orphan.
   */
  private async putMember(result: { hash: string; crc32: number; logicalSize: number; member: Buffer }, signal?: AbortSignal) {
    const key = mapKey(result.hash);
    try {
      await this.blobs.put(key, result.member, { ifNoneMatch: true, signal });
      return { storedSize: result.member.length, written: true };
    } catch (err) {
      if (!(err instanceof BlobExistsError)) throw err;
    }
    let existing: Buffer;
    try {
      existing = await this.blobs.get(key, signal);
    } catch (err) {
      // Collected between the two calls (an orphan the cleaner took): the commit would refuse it.
      if (err instanceof BlobNotFoundError) throw retryable('the stored copy of this content was collected during the upload');
      throw err;
    }
    const read = readSingleMember(existing, result.logicalSize);
    if (read === null || read.crc32 !== result.crc32 || read.content.length !== result.logicalSize) {
      throw retryable(`${key} holds something other than this content (a leftover the cleaner's full scan removes)`);
    }
    return { storedSize: existing.length, written: false };
  }

  async stat(path: string): Promise<StoredFile | null> {
    const f = await this.meta.getFile(path);
    return f && withGzipLength(f);
  }

  /**
   * The file's metadata and its content as one gzip member; null when absent. A small file
   * (at most `readAhead` blocks and SMALL_GET_BYTES on the wire) comes back as one Buffer;
   * a larger one as a stream, block by block with a bounded read-ahead. Either way the first
   * block is fetched before this resolves, so an unreadable blob store fails the request with
   * a 5xx instead of a 200 that breaks off after the header.
   */
  async open(path: string, signal?: SignalSource): Promise<{ file: StoredFile; body: Readable | Buffer } | null> {
    const found = await this.meta.getFileForRead(path);
    if (!found) return null;
    const file = withGzipLength(found.file);
    const { blocks } = found;
    if (isWholeMember(file) && blocks.length === 0) {
      return { file, body: await this.fetchObject(mapKey(file.contentHash), file.storedSize, this.isCacheable(file), signal) };
    }
    if (blocks.length !== file.blockCount || gzipMemberLength(blocks.map((b) => b.storedSize)) !== file.gzipLength) {
      throw new AppError('INTERNAL', `metadata of ${file.path} is inconsistent (block list does not match the content record)`);
    }
    if (file.gzipLength <= SMALL_GET_BYTES && blocks.length <= this.options.readAhead) {
      const cacheable = this.isCacheable(file);
      const runs = await Promise.all(planRuns(blocks).map((run) => this.fetchRun(run, cacheable, signal)));
      const body = Buffer.concat([GZIP_HEADER, ...runs.flat(), DEFLATE_END, gzipTrailer(file.crc32, file.logicalSize)], file.gzipLength);
      return { file, body };
    }
    const segments = this.readAhead(file, blocks, signalOf(signal));
    const first = await segments.next();
    return { file, body: Readable.from(this.gzipChunks(file, first, segments), { objectMode: false, highWaterMark: 1 << 20 }) };
  }

  async delete(path: string, version: number, signal?: AbortSignal): Promise<DeleteOutcome> {
    return this.locked([pathKey(path)], () => this.meta.commitDelete(path, version), signal);
  }

  /** Runs a metadata commit under `keys`, recording how long the locks took. */
  private async locked<T>(keys: string[], commit: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const t0 = performance.now();
    try {
      return await this.locks.withLocks(
        keys,
        () => {
          recordLockWait((performance.now() - t0) / 1000, false);
          return commit();
        },
        { timeoutMs: this.options.lockTimeoutMs, signal },
      );
    } catch (err) {
      if (err instanceof AppError && err.code === 'LOCK_TIMEOUT') recordLockWait((performance.now() - t0) / 1000, true);
      throw err;
    }
  }

  /** Paths (relative to `dir`) of files under `dir` with version <= maxVersion. */
  async *list(dir: string, maxVersion: number): AsyncGenerator<string> {
    const prefix = dir === '' ? '' : `${dir}/`;
    for await (const f of this.meta.listFiles(prefix, maxVersion)) yield f.path.slice(prefix.length);
  }

  private async *gzipChunks(file: StoredFile, first: IteratorResult<Buffer>, rest: AsyncGenerator<Buffer>): AsyncGenerator<Buffer> {
    yield GZIP_HEADER;
    if (!first.done) {
      yield first.value;
      yield* rest;
    }
    yield DEFLATE_END;
    yield gzipTrailer(file.crc32, file.logicalSize);
  }

  /**
   * The stored segments in order. Runs are fetched ahead while they hold at most `readAhead`
   * blocks together, and two runs always, so that a long run of an extent does not wait alone.
   */
  private async *readAhead(file: StoredFile, blocks: BlockRef[], signal?: AbortSignal): AsyncGenerator<Buffer> {
    const runs = planRuns(blocks);
    const ahead: Array<{ run: Promise<Buffer[]> | AsyncIterable<Buffer>; blocks: number }> = [];
    let blocksAhead = 0;
    let next = 0;
    const cacheable = this.isCacheable(file);
    const fetchMore = () => {
      while (next < runs.length && (ahead.length < 2 || blocksAhead + runs[next].blocks.length <= this.options.readAhead)) {
        const run = runs[next++];
        ahead.push({ run: this.startRun(run, cacheable, signal), blocks: run.blocks.length });
        blocksAhead += run.blocks.length;
      }
    };
    fetchMore();
    while (ahead.length > 0) {
      const head = ahead.shift()!;
      // Once the head run is in (streamed: its first piece), the next ones may start.
      if (head.run instanceof Promise) {
        const segments = await head.run;
        blocksAhead -= head.blocks;
        fetchMore();
        yield* segments;
      } else {
        const pieces = head.run[Symbol.asyncIterator]();
        let piece = await pieces.next();
        blocksAhead -= head.blocks;
        fetchMore();
        for (; !piece.done; piece = await pieces.next()) yield piece.value;
      }
    }
  }

  /**
   * Starts fetching one run. A run of an extent that streams past the cache comes piece by piece
   * as it arrives (read ahead at the socket's pace, see util/prefetch.ts); the rest whole, split
   * into segments. (Every run through prefetch() halved local-disk GETs, 2048 one-block runs
   * per 256 MiB: 480-650 -> 280-480 MB/s in a full bench run and an A/B; not profiled further.)
   */
  private startRun(run: Run, cacheable: boolean, signal?: AbortSignal): Promise<Buffer[]> | AsyncIterable<Buffer> {
    if (run.extent !== null && !cacheable && this.blobs.rangePieces) {
      return prefetch(this.blobs.rangePieces(extentKey(run.extent), run.offset, run.bytes, signal));
    }
    const segments = this.fetchRun(run, cacheable, signal);
    segments.catch(() => {}); // awaited in order
    return segments;
  }

  /**
   * The bytes of one run, in order: a block object, or consecutive segments of one extent read
   * with one ranged request (none when the cache has them all), split into its segments.
   */
  private async fetchRun(run: Run, cacheable: boolean, signal?: SignalSource): Promise<Buffer[]> {
    if (run.extent === null) return [await this.fetchObject(blockKey(run.blocks[0].hash), run.blocks[0].storedSize, cacheable, signal)];
    if (cacheable) {
      const cached = run.blocks.map((b) => this.cached(blockKey(b.hash), b.storedSize));
      if (cached.every((c) => c !== undefined)) return cached as Buffer[];
    }
    const data = await this.blobs.getRange(extentKey(run.extent), run.offset, run.bytes, signalOf(signal));
    const segments: Buffer[] = [];
    let at = 0;
    for (const b of run.blocks) {
      const segment = data.subarray(at, (at += b.storedSize));
      if (cacheable) this.cache.set(blockKey(b.hash), segment, segment.length);
      segments.push(segment);
    }
    return segments;
  }

  /** Large files stream past the cache so one big download cannot evict every hot block. */
  private isCacheable(file: StoredFile): boolean {
    return file.storedSize <= this.cache.capacity / 8;
  }

  /**
   * One stored object (a block's segment, or a whole member), from the cache when it is there,
   * its length checked against the metadata. Cached by blob key, so a block and a whole member
   * of the same hash never meet.
   */
  private async fetchObject(key: string, storedSize: number, cacheable: boolean, signal?: SignalSource): Promise<Buffer> {
    const cached = this.cached(key, storedSize);
    if (cached) return cached;
    const data = await this.blobs.get(key, signalOf(signal));
    if (data.length !== storedSize) {
      throw new AppError('INTERNAL', `${key} has ${data.length} stored bytes, metadata says ${storedSize}`);
    }
    if (cacheable) this.cache.set(key, data, data.length);
    return data;
  }

  /** A cached segment of the length the metadata says (a block stored anew since may differ). */
  private cached(key: string, storedSize: number): Buffer | undefined {
    const data = this.cache.get(key);
    return data?.length === storedSize ? data : undefined;
  }
}
