// The upload pipeline: body -> (gunzip) -> FastCDC -> per-block hash (and the whole content's
// SHA-256, fed block by block in order), existence check, compression and write, several blocks
// in flight. Nothing is buffered beyond `concurrency` blocks; the body pauses while all permits
// are taken. Small bodies (the common Filetracker case) whose content fits one block take a
// buffered path instead and come back as one whole gzip member (store/small-member.ts).
import { createHash } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, crc32, gunzipSync } from 'node:zlib';
import type { BlobStore } from '../blobs/blob-store.js';
import { AppError } from '../errors.js';
import type { BlockRef, MetadataStore } from '../meta/metadata-store.js';
import { Semaphore } from '../util/semaphore.js';
import { createChunkerStream, type ChunkerParams } from './chunker.js';
import { combineCrcs } from './gzip-member.js';
import { blockKey } from './keys.js';
import { ExtentWriter, type Placed } from './extent.js';
import { nativeDeflate } from './native-deflate.js';
import { compressSegment } from './segment.js';
import { deflateSmall, readSingleMember, wholeMember, type SmallContent } from './small-member.js';

export interface IngestOptions {
  gzip: boolean;
  chunker: ChunkerParams;
  /** Blocks hashed, compressed or written at once per upload. */
  concurrency: number;
  /** deflate level for compressible blocks (incompressible ones are stored at level 0). */
  compressionLevel: number;
  /** New blocks are packed into extent objects of about this many bytes; 0: one object per block. */
  extentBytes: number;
  blobs: BlobStore;
  meta: MetadataStore;
  /**
   * Awaited before the upload's first block lookup: reads the GC watermark its commit guard
   * needs (CommitGuard.startSeq), at most once. Absent: the caller read it before.
   */
  beforeLookup?: () => Promise<unknown>;
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
  /**
   * A content of at most one block from the buffered path: its whole gzip member, not yet
   * written (the caller stores it at maps/<hash> unless the content exists). `blocks` is empty.
   */
  member?: Buffer;
}

/** Bodies up to this many bytes on the wire are read whole and take the buffered path (64 KiB). */
export const SMALL_BODY_BYTES = 65_536;

/** Whether ingestBody reads a body of this many bytes on the wire whole instead of streaming it. */
export function readsWhole(bodyLength: number | undefined): bodyLength is number {
  return bodyLength !== undefined && bodyLength <= SMALL_BODY_BYTES;
}

/** A gzip body is inflated in pieces this large: each piece is a thread-pool round trip (1 MiB). */
const GUNZIP_CHUNK = 1_048_576;

const sha256hex = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** A block's SHA-256 (hex) and CRC-32: on the addon's threads when it is built, else here. */
const hashBlock: (block: Buffer) => Promise<{ hash: string; crc: number }> = nativeDeflate
  ? async (block) => {
      const digest = Buffer.allocUnsafe(32);
      const crc = await nativeDeflate!.hashBlock(block, digest);
      return { hash: digest.toString('hex'), crc };
    }
  : async (block) => ({ hash: sha256hex(block), crc: crc32(block) });

/** The whole content's SHA-256, fed its blocks in content order. */
interface ContentHasher {
  /** Settles once `block` is in the hash; `block` stays unchanged until then. */
  update(block: Buffer): Promise<void>;
  /** The hex digest, once every update has settled. */
  digest(): string;
}

/** On the addon's threads (each update after the previous one) when it is built, else here. */
function contentHasher(): ContentHasher {
  const native = nativeDeflate;
  if (native) {
    const state = native.contentHash();
    return {
      update: (block) => native.contentHashUpdate(state, block),
      digest: () => {
        const digest = Buffer.allocUnsafe(32);
        native.contentHashDigest(state, digest);
        return digest.toString('hex');
      },
    };
  }
  const hash = createHash('sha256');
  return { update: async (block) => void hash.update(block), digest: () => hash.digest('hex') };
}

/** Writes the blocks of one upload that the store lacks, remembering what it did. */
class BlockWriter {
  readonly reused = new Set<string>();
  written = 0;
  storedBytesWritten = 0;
  /** null: one `blocks/<sha256>` object per block */
  readonly extents: ExtentWriter | null;
  /** resolves when the previous store() call has appended (or skipped) its block */
  private turn: Promise<void> = Promise.resolve();

  constructor(private readonly o: IngestOptions) {
    this.extents = o.extentBytes > 0 ? new ExtentWriter(o.blobs, o.extentBytes, o.signal) : null;
  }

  /**
   * The block's stored form, writing it first unless the store has it. Calls run concurrently,
   * but appends to the extent happen in the order of the calls (content order), so that a run
   * of consecutive blocks is one contiguous range of an extent.
   */
  async store(hash: string, data: Buffer, crc: number): Promise<Placed> {
    const previous = this.turn;
    let done!: () => void;
    this.turn = new Promise<void>((r) => (done = r));
    try {
      await this.o.beforeLookup?.();
      const storedSize = (await this.o.meta.findBlocks([hash])).get(hash);
      if (storedSize !== undefined) {
        this.reused.add(hash);
        return { storedSize };
      }
      const segment = await compressSegment(data, this.o.compressionLevel, crc);
      this.written++;
      this.storedBytesWritten += segment.data.length;
      if (!this.extents) {
        await this.o.blobs.put(blockKey(hash), segment.data, { signal: this.o.signal });
        return { storedSize: segment.data.length };
      }
      await previous;
      return { storedSize: segment.data.length, ...(await this.extents.append(hash, segment.data)) };
    } finally {
      // A block that needed no append still waits for the earlier ones: order is kept.
      void previous.then(done);
    }
  }

  result(hash: string, logicalSize: number, blocks: BlockRef[]): IngestResult {
    return {
      hash,
      logicalSize,
      storedSize: blocks.reduce((sum, b) => sum + b.storedSize, 0),
      crc32: combineCrcs(blocks),
      blocks,
      reused: [...this.reused],
      written: this.written,
      storedBytesWritten: this.storedBytesWritten,
    };
  }
}

/**
 * Stores a body of `bodyLength` bytes (as sent). Bodies up to SMALL_BODY_BYTES whose content
 * fits in one block come back with their whole gzip member (`member`, store/small-member.ts)
 * for the caller to write; anything else, or a gzip body that inflates beyond one block,
 * streams through `ingest`.
 */
export async function ingestBody(body: Readable, bodyLength: number | undefined, o: IngestOptions): Promise<IngestResult> {
  if (!readsWhole(bodyLength)) return ingest(body, o);
  const raw = await readAll(body, bodyLength, o.signal);
  const maxContent = o.chunker.minSize;
  let small: SmallContent | null = null;
  if (o.gzip) small = readSingleMember(raw, maxContent);
  if (small === null) {
    let content: Buffer = raw;
    if (o.gzip) {
      try {
        content = gunzipSync(raw, { maxOutputLength: maxContent });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ERR_BUFFER_TOO_LARGE') throw classifyIngestError(err, o.signal);
        return ingest(Readable.from([raw]), o); // inflates past one block: chunk it as a stream
      }
    }
    if (content.length > maxContent) return ingest(Readable.from([raw]), o);
    small = { content, crc32: crc32(content), deflate: content.length ? deflateSmall(content, o.compressionLevel) : Buffer.alloc(0) };
  }
  const { content, crc32: crc } = small;
  const hash = sha256hex(content);
  const writer = new BlockWriter(o);
  if (content.length === 0) return writer.result(hash, 0, []);
  const member = wholeMember(small.deflate, crc, content.length);
  return { ...writer.result(hash, content.length, []), storedSize: member.length, crc32: crc, member };
}

/** Streams `body` into the blob store as blocks; commits no metadata. */
export async function ingest(body: Readable, o: IngestOptions): Promise<IngestResult> {
  const whole = contentHasher();
  let logicalSize = 0;
  const writer = new BlockWriter(o);
  const blocks: BlockRef[] = [];
  const started = new Map<string, Promise<Placed>>();
  const sem = new Semaphore(o.concurrency);
  let failure: unknown = null;
  // Blocks hash in parallel, but are registered (deduplicated within the upload, handed to
  // store()) one after another in content order, as store() needs.
  let registered: Promise<void> = Promise.resolve();

  const sink = new Writable({
    objectMode: true,
    write(chunk: Buffer, _enc, cb) {
      if (failure) return cb(failure as Error);
      const ref: BlockRef = { hash: '', size: chunk.length, storedSize: -1, crc32: 0 };
      blocks.push(ref);
      logicalSize += chunk.length;
      sem.acquire().then(() => {
        // Writes come one at a time, in content order: so do the content hash's updates. The
        // permit is held until both hashes have the block, so the blocks they hold stay bounded.
        const hashed = Promise.all([hashBlock(chunk), whole.update(chunk)]).then(([block]) => block);
        const previous = registered;
        registered = hashed.then(
          async ({ hash, crc }) => {
            await previous;
            Object.assign(ref, { hash, crc32: crc });
            // A block repeated within the upload, or one after a failure: nothing more to write.
            if (started.has(hash) || failure) return sem.release();
            const p = writer.store(hash, chunk, crc).finally(() => sem.release());
            p.catch((err) => (failure ??= err)); // reported by the next write or by final()
            started.set(hash, p);
          },
          async (err) => {
            await previous;
            sem.release();
            failure ??= err;
          },
        );
        cb();
      }, cb);
    },
    final(cb) {
      registered
        .then(() => Promise.allSettled(started.values()))
        .then((results) => {
          const rejected = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
          cb(rejected ? rejected.reason : (failure as Error | null));
        }, cb);
    },
  });

  const stages: Array<NodeJS.ReadableStream | NodeJS.WritableStream> = [body];
  if (o.gzip) stages.push(createGunzip({ chunkSize: GUNZIP_CHUNK }));
  stages.push(createChunkerStream(o.chunker), sink);
  try {
    await (pipeline as (...s: unknown[]) => Promise<void>)(...stages, o.signal ? { signal: o.signal } : {});
  } catch (err) {
    // Let in-flight writes finish (they are harmless orphans for the cleaner) before reporting.
    await registered;
    await Promise.allSettled(started.values());
    await writer.extents?.abandon();
    throw classifyIngestError(err, o.signal);
  }
  try {
    await writer.extents?.finish();
  } catch (err) {
    throw classifyIngestError(err, o.signal);
  }
  for (const b of blocks) Object.assign(b, await started.get(b.hash)!);
  return writer.result(whole.digest(), logicalSize, blocks);
}

/** The whole body, which the client announced as `length` bytes (at most SMALL_BODY_BYTES). */
async function readAll(body: Readable, length: number, signal?: AbortSignal): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let received = 0;
  try {
    for await (const chunk of body) {
      received += (chunk as Buffer).length;
      if (received > length) throw new AppError('BAD_BODY', `the body is longer than its Content-Length (${length})`);
      chunks.push(chunk as Buffer);
    }
  } catch (err) {
    throw classifyIngestError(err, signal);
  }
  if (received < length) throw new AppError('CLIENT_ABORTED', 'the client closed the connection before the body ended');
  return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, received);
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
