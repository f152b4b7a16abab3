// The blob store interface: flat keys to immutable byte objects. Implemented by the S3 store
// (blobs/s3.ts) and the local-directory store (blobs/local.ts); both pass test/blobs/contract.ts.
//
// Keys are '/'-separated ASCII (e.g. `blocks/<sha256>`, `maps/<sha256>`, `s3dedup.json`).
// Objects are small (a block is at most the chunker's max size, an extent of blocks or a map a
// few MB), so every write is a single PUT of a Buffer; nothing here needs multipart.
//
// Errors: a missing key is BlobNotFoundError, a failed conditional create is BlobExistsError,
// anything else is BlobStoreError. Backend-specific errors never leak above this interface.

export interface BlobInfo {
  key: string;
  /** bytes */
  size: number;
  lastModified: Date;
}

export interface PutOptions {
  /** Only create: fail with BlobExistsError when the key already exists. */
  ifNoneMatch?: boolean;
  signal?: AbortSignal;
}

/** What one compaction of a store's space did. */
export interface CompactReport {
  packsRemoved: number;
  objectsMoved: number;
  /** bytes of overwritten or deleted objects given back to the file system */
  bytesFreed: number;
}

export interface BlobStore {
  /** Human-readable location, for logs: `s3://bucket` or `file:///data/blobs`. */
  readonly describe: string;
  /**
   * Writes the whole object atomically (readers never see a partial object). Keeps no reference
   * to `data` once it resolves: the caller may reuse the buffer (store/extent.ts does).
   */
  put(key: string, data: Buffer, options?: PutOptions): Promise<void>;
  /** Reads the whole object. Throws BlobNotFoundError when absent. */
  get(key: string, signal?: AbortSignal): Promise<Buffer>;
  /**
   * Reads `length` bytes at `offset` (one ranged request on S3). Throws BlobNotFoundError when
   * absent and BlobStoreError when the object ends before `offset + length`.
   */
  getRange(key: string, offset: number, length: number, signal?: AbortSignal): Promise<Buffer>;
  /**
   * The same bytes as the pieces they arrive in, for a caller that passes them on as they come
   * (a large GET); the length is checked after the last piece. Stores that read a range in one
   * piece leave it out.
   */
  rangePieces?(key: string, offset: number, length: number, signal?: AbortSignal): AsyncIterable<Buffer>;
  /** Size and time of the object, or null when absent. */
  head(key: string, signal?: AbortSignal): Promise<BlobInfo | null>;
  /** Deletes the object; deleting an absent key is not an error. */
  delete(key: string): Promise<void>;
  /** Every object whose key starts with prefix, in pages, in key order. */
  list(prefix: string): AsyncIterable<BlobInfo>;
  /** Cheap liveness check (bucket reachable / directory writable). */
  ping(signal?: AbortSignal): Promise<void>;
  /**
   * Gives back the space of deleted and overwritten objects, for stores that keep it until then
   * (the packed local store); the cleaner calls it after each pass. Stores that free space at
   * delete (S3, one file per object) leave it out.
   */
  compact?(): Promise<CompactReport>;
  /** Releases sockets and handles. */
  close(): Promise<void>;
}
