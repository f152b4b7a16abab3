// The GET path's one query returns a row per block (file and content columns repeated); both
// metadata paths (Kysely, and the SQLite hot path) select these columns under these names and
// build the result here.
import { AppError } from '../errors.js';
import type { BlockRef, FileWithContent } from './metadata-store.js';

export interface FileForReadRow {
  path: string;
  version: number | string;
  content_hash: string;
  logical_size: number | string;
  content_stored_size: number | string;
  content_crc32: number | string;
  block_count: number | string;
  block_hash: string | null;
  block_size: number | string | null;
  block_stored_size: number | string | null;
  block_crc32: number | string | null;
  block_extent: string | null;
  block_extent_offset: number | string | null;
}

/** PostgreSQL's int8 may arrive as text; SQLite's are numbers. */
export const n = (v: unknown): number => (typeof v === 'number' ? v : Number(v));

/** The 503 a commit answers when it cannot prove its blobs survived the cleaner (docs/gc.md). */
export const retryable = (why: string) => new AppError('UNAVAILABLE', `${why}; retry the request`);

export function fileForRead(rows: readonly FileForReadRow[]): { file: FileWithContent; blocks: BlockRef[] } | null {
  if (rows.length === 0) return null;
  const r = rows[0];
  const file: FileWithContent = {
    path: r.path,
    version: n(r.version),
    contentHash: r.content_hash,
    logicalSize: n(r.logical_size),
    storedSize: n(r.content_stored_size),
    crc32: n(r.content_crc32),
    blockCount: n(r.block_count),
  };
  const blocks: BlockRef[] = [];
  for (const b of rows) {
    if (b.block_hash === null) continue; // an empty file has no block rows
    blocks.push({
      hash: b.block_hash,
      size: n(b.block_size),
      storedSize: n(b.block_stored_size),
      crc32: n(b.block_crc32),
      ...(b.block_extent !== null && { extent: b.block_extent, offset: n(b.block_extent_offset) }),
    });
  }
  return { file, blocks };
}
