// The GET and HEAD lookups, shared by the three ways the metadata store runs them (Kysely, the
// SQLite hot path, PostgreSQL's prepared reads): their SQL, the columns under these names, and
// the results built from the rows.
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

/**
 * Files plus their blocks whose GET and HEAD lookups a SQLite store keeps in memory (some 10 MB).
 * Here, beside the lookups, rather than in the metadata store: the configuration reads it, and
 * must not load the database drivers to do so.
 */
export const DEFAULT_FILE_CACHE_SIZE = 32_768;

/**
 * The GET lookup: the file, its content and its blocks in order, a row per block (file and
 * content columns repeated). `param` is the dialect's placeholder for the path (`?` or `$1`).
 */
export const fileForReadSql = (param: string): string => `select f.path, f.version, f.content_hash, f.logical_size,
       c.stored_size as content_stored_size, c.crc32 as content_crc32, c.block_count,
       b.hash as block_hash, b.size as block_size, b.stored_size as block_stored_size, b.crc32 as block_crc32,
       b.extent as block_extent, b.extent_offset as block_extent_offset
  from files f
  join contents c on c.hash = f.content_hash
  left join content_blocks cb on cb.content_hash = c.hash
  left join blocks b on b.hash = cb.block_hash
 where f.path = ${param}
 order by cb.idx`;

/** The HEAD lookup: the file and its content's columns (`fileRow` reads the row). */
export const fileSql = (param: string): string =>
  `select f.path, f.version, f.content_hash, f.logical_size, c.stored_size, c.crc32, c.block_count
     from files f join contents c on c.hash = f.content_hash where f.path = ${param}`;

export interface FileRow {
  path: string;
  version: number | string;
  content_hash: string;
  logical_size: number | string;
  stored_size: number | string;
  crc32: number | string;
  block_count: number | string;
}

export function fileRow(r: FileRow): FileWithContent {
  return {
    path: r.path,
    version: n(r.version),
    contentHash: r.content_hash,
    logicalSize: n(r.logical_size),
    storedSize: n(r.stored_size),
    crc32: n(r.crc32),
    blockCount: n(r.block_count),
  };
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
