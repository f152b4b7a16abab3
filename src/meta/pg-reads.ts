// The per-request reads of MetadataStore on PostgreSQL (the GET lookup, HEAD's, and the checks
// an upload makes) as named prepared statements on the pg pool: each connection parses and plans
// them once instead of on every request, and no Kysely query is built. The SQL and the rows are
// those of the Kysely queries in metadata-store.ts; the test suite runs these on PostgreSQL.
import type { Kysely } from 'kysely';
import type pg from 'pg';
import type { BlockRef, FileWithContent } from './metadata-store.js';
import { fileForRead, n, type FileForReadRow } from './file-for-read.js';
import type { Database } from './schema.js';

/** The pg pool under each Kysely instance openPostgres made (this module does not load pg itself). */
const pools = new WeakMap<Kysely<Database>, pg.Pool>();

export function registerPgPool(db: Kysely<Database>, pool: pg.Pool): void {
  pools.set(db, pool);
}

/** The pool under `db` when openPostgres opened it; undefined for any other Kysely. */
export function pgPool(db: Kysely<Database>): pg.Pool | undefined {
  return pools.get(db);
}

const FILE_FOR_READ = `select f.path, f.version, f.content_hash, f.logical_size,
       c.stored_size as content_stored_size, c.crc32 as content_crc32, c.block_count,
       b.hash as block_hash, b.size as block_size, b.stored_size as block_stored_size, b.crc32 as block_crc32,
       b.extent as block_extent, b.extent_offset as block_extent_offset
  from files f
  join contents c on c.hash = f.content_hash
  left join content_blocks cb on cb.content_hash = c.hash
  left join blocks b on b.hash = cb.block_hash
 where f.path = $1
 order by cb.idx`;

export class PgReads {
  constructor(private readonly pool: pg.Pool) {}

  private async rows<R>(name: string, text: string, values: unknown[]): Promise<R[]> {
    return (await this.pool.query({ name, text, values })).rows as R[];
  }

  async getFileForRead(path: string): Promise<{ file: FileWithContent; blocks: BlockRef[] } | null> {
    return fileForRead(await this.rows<FileForReadRow>('s3dedup_file_for_read', FILE_FOR_READ, [path]));
  }

  async getFile(path: string): Promise<FileWithContent | null> {
    const [r] = await this.rows<Record<string, unknown>>(
      's3dedup_file',
      `select f.path, f.version, f.content_hash, f.logical_size, c.stored_size, c.crc32, c.block_count
         from files f join contents c on c.hash = f.content_hash where f.path = $1`,
      [path],
    );
    if (!r) return null;
    return {
      path: r.path as string,
      version: n(r.version),
      contentHash: r.content_hash as string,
      logicalSize: n(r.logical_size),
      storedSize: n(r.stored_size),
      crc32: n(r.crc32),
      blockCount: n(r.block_count),
    };
  }

  async hasContent(hash: string): Promise<boolean> {
    return (await this.rows('s3dedup_has_content', `select 1 from contents where hash = $1`, [hash])).length > 0;
  }

  async blockStoredSize(hash: string): Promise<number | undefined> {
    const [r] = await this.rows<{ stored_size: unknown }>('s3dedup_block_stored_size', `select stored_size from blocks where hash = $1`, [hash]);
    return r ? n(r.stored_size) : undefined;
  }

  async gcWatermark(): Promise<number> {
    const [r] = await this.rows<{ w: unknown }>(
      's3dedup_gc_watermark',
      `select greatest(pruned_through, coalesce((select max(seq) from gc_log), 0)) as w from gc_state where id = 1`,
      [],
    );
    return r ? n(r.w) : 0;
  }
}
