// Extents: the new blocks of one upload written together, in content order, as a few objects
// `extents/<id>` of up to EXTENT_BYTES each, instead of one object per block.
//
// Why: on S3 every object is a request, and a request costs far more than its bytes (moto
// serves about 250 a second whatever their size; AWS bills per request). A 256 MiB file at
// 128 KiB blocks was 2048 PUTs and 2048 GETs; in 8 MiB extents it is 32 of each, since a GET
// reads a run of consecutive blocks with one ranged request (store/file-store.ts).
//
// Object format: the segments back to back (a block row's extent_offset points into this), then
// a trailer that makes the object readable without the metadata:
//   per block: sha256 (32 bytes) | u32 BE stored length;  then u32 BE block count | `S3DE`.
// The id is random (128 bits, hex): only the upload that wrote an extent ever names it in a row.
import { randomBytes } from 'node:crypto';
import type { BlobStore } from '../blobs/blob-store.js';
import type { BlockRef } from '../meta/metadata-store.js';
import { EXTENT_ID_DIGITS, extentKey } from './keys.js';

const MAGIC = Buffer.from('S3DE');
const ENTRY_BYTES = 36;

/** Where a block's segment lives in an extent. */
export interface ExtentPlace {
  extent: string;
  offset: number;
}

/** The trailer of an extent holding segments of these (hash, stored length) pairs. */
export function extentTrailer(entries: ReadonlyArray<{ hash: string; length: number }>): Buffer {
  const out = Buffer.allocUnsafe(entries.length * ENTRY_BYTES + 8);
  entries.forEach((e, i) => {
    out.write(e.hash, i * ENTRY_BYTES, 32, 'hex');
    out.writeUInt32BE(e.length, i * ENTRY_BYTES + 32);
  });
  out.writeUInt32BE(entries.length, entries.length * ENTRY_BYTES);
  MAGIC.copy(out, entries.length * ENTRY_BYTES + 4);
  return out;
}

/** The blocks an extent object lists in its trailer, with their offsets; null when it has none. */
export function readExtentTrailer(object: Buffer): Array<{ hash: string; offset: number; length: number }> | null {
  if (object.length < 8 || !object.subarray(object.length - 4).equals(MAGIC)) return null;
  const count = object.readUInt32BE(object.length - 8);
  const start = object.length - 8 - count * ENTRY_BYTES;
  if (start < 0) return null;
  const out: Array<{ hash: string; offset: number; length: number }> = [];
  let offset = 0;
  for (let i = 0; i < count; i++) {
    const at = start + i * ENTRY_BYTES;
    const length = object.readUInt32BE(at + 32);
    out.push({ hash: object.toString('hex', at, at + 32), offset, length });
    offset += length;
  }
  return offset === start ? out : null;
}

const newExtentId = (): string => randomBytes(EXTENT_ID_DIGITS / 2).toString('hex');

/** Capacity of an upload's first extent buffer; it doubles as the upload's blocks arrive (256 KiB). */
const FIRST_BUFFER_BYTES = 256 << 10;

/**
 * Packs one upload's segments into extents. append() is called in content order; an extent is
 * written once it reaches `maxBytes`, with at most one write in flight (a second full extent
 * waits in append), so an upload holds at most two extents. finish() writes the last, partial
 * one; a place returned by append() is durable only once finish() resolves.
 *
 * Memory: each segment is copied into the extent's buffer as it comes, so it can die young, and
 * the upload reuses two buffers, the one being written and the one being filled. Keeping an
 * extent's segments until it was full and then joining them made a new 8 MiB buffer per extent,
 * and a large PUT to S3 had the highest peak RSS of any load (bench/README.md, "Extent
 * buffers"). A buffer is reused only after its write succeeded: the blob store has read it then
 * (BlobStore.put keeps no reference to `data`).
 */
export class ExtentWriter {
  private id = newExtentId();
  /** the extent being filled, `bytes` of it used; null until its first segment */
  private buffer: Buffer | null = null;
  /** a buffer whose write has finished, for the next extent */
  private spare: Buffer | null = null;
  private entries: Array<{ hash: string; length: number }> = [];
  private bytes = 0;
  private inFlight: Promise<void> = Promise.resolve();
  private failure: unknown = null;

  constructor(
    private readonly blobs: BlobStore,
    private readonly maxBytes: number,
    private readonly signal?: AbortSignal,
  ) {}

  async append(hash: string, segment: Buffer): Promise<ExtentPlace> {
    if (this.failure) throw this.failure;
    const place = { extent: this.id, offset: this.bytes };
    segment.copy(this.room(segment.length), this.bytes);
    this.entries.push({ hash, length: segment.length });
    this.bytes += segment.length;
    if (this.bytes >= this.maxBytes) await this.seal();
    return place;
  }

  /** Writes the partial extent and waits for every write; throws the first failure. */
  async finish(): Promise<void> {
    if (this.bytes > 0) await this.seal();
    await this.inFlight;
    if (this.failure) throw this.failure;
  }

  /** Waits for writes in flight, ignoring their outcome (the upload failed anyway). */
  async abandon(): Promise<void> {
    await this.inFlight.catch(() => {});
  }

  /**
   * The current buffer, with room for `more` bytes after the used ones: the spare one, or one
   * that grows by doubling (up to what an extent needs), so a small upload takes little.
   */
  private room(more: number): Buffer {
    if (!this.buffer && this.spare) {
      this.buffer = this.spare;
      this.spare = null;
    }
    const needed = this.bytes + more;
    if (!this.buffer || this.buffer.length < needed) {
      // An extent ends past maxBytes by its last segment and its trailer: an eighth more is room for both.
      const full = this.maxBytes + (this.maxBytes >> 3);
      const grown = Buffer.allocUnsafe(Math.max(needed, Math.min(Math.max(FIRST_BUFFER_BYTES, 2 * (this.buffer?.length ?? 0)), full)));
      this.buffer?.copy(grown, 0, 0, this.bytes);
      this.buffer = grown;
    }
    return this.buffer;
  }

  /** Starts the current extent's write once the previous one is done. */
  private async seal(): Promise<void> {
    const trailer = extentTrailer(this.entries);
    const buffer = this.room(trailer.length);
    trailer.copy(buffer, this.bytes);
    const body = buffer.subarray(0, this.bytes + trailer.length);
    const key = extentKey(this.id);
    this.id = newExtentId();
    this.buffer = null;
    this.entries = [];
    this.bytes = 0;
    await this.inFlight;
    if (this.failure) throw this.failure;
    this.inFlight = this.blobs.put(key, body, { signal: this.signal }).then(
      () => {
        this.spare = buffer;
      },
      (err) => {
        this.failure ??= err;
      },
    );
  }
}

/** Where a block is stored: its segment's length and, in an extent, its place (all planRuns needs of a block). */
export type Placed = Pick<BlockRef, 'storedSize' | 'extent' | 'offset'>;

/** Consecutive blocks read with one request: one block object, or a stretch of an extent. */
export interface Run<B extends Placed = BlockRef> {
  /** null: the single block's own object */
  extent: string | null;
  offset: number;
  bytes: number;
  blocks: B[];
}

/** Bytes one ranged read may cover (8 MiB): a download holds at most two such runs. */
const RUN_MAX_BYTES = 8 << 20;

/** Groups blocks, in order, into runs (consecutive segments of one extent, back to back). */
export function planRuns<B extends Placed>(blocks: readonly B[]): Array<Run<B>> {
  const runs: Array<Run<B>> = [];
  let last: Run<B> | undefined;
  for (const b of blocks) {
    const extent = b.extent ?? null;
    const offset = b.offset ?? 0;
    if (last && extent !== null && last.extent === extent && last.offset + last.bytes === offset && last.bytes + b.storedSize <= RUN_MAX_BYTES) {
      last.bytes += b.storedSize;
      last.blocks.push(b);
      continue;
    }
    last = { extent, offset, bytes: b.storedSize, blocks: [b] };
    runs.push(last);
  }
  return runs;
}
