// Row types of the metadata database (see migrations/ for the why of each column).
import type { Generated } from 'kysely';

export interface FilesTable {
  path: string;
  version: number;
  content_hash: string;
  logical_size: number;
  updated_at: number;
}

export interface ContentsTable {
  hash: string;
  logical_size: number;
  stored_size: number;
  crc32: number;
  block_count: number;
  ref_count: number;
  updated_at: number;
}

export interface ContentBlocksTable {
  content_hash: string;
  idx: number;
  block_hash: string;
}

export interface BlocksTable {
  hash: string;
  size: number;
  stored_size: number;
  crc32: number;
  ref_count: number;
  updated_at: number;
  /** id of the extent object holding the segment; null: the segment is `blocks/<hash>` */
  extent: string | null;
  /** offset of the segment in its extent */
  extent_offset: number | null;
}

export interface GcLogTable {
  seq: Generated<number>;
  key: string;
  pending: number;
  created_at: number;
}

export interface GcStateTable {
  id: number;
  pruned_through: number;
}

export interface RetiredExtentsTable {
  id: string;
  /** Unix ms: when compaction moved its last block out */
  retired_at: number;
}

export interface Database {
  files: FilesTable;
  contents: ContentsTable;
  content_blocks: ContentBlocksTable;
  blocks: BlocksTable;
  gc_log: GcLogTable;
  gc_state: GcStateTable;
  retired_extents: RetiredExtentsTable;
}
