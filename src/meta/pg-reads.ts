// The per-request reads of MetadataStore on PostgreSQL (the GET lookup, HEAD's, and the checks
// an upload makes) as named prepared statements on the pg pool: each connection parses and plans
// them once instead of on every request, and no Kysely query is built. The SQL and the rows are
// those of the Kysely queries in metadata-store.ts; the test suite runs these on PostgreSQL.
import type { Kysely } from 'kysely';
import type pg from 'pg';
import type { BlockRef, FileWithContent, UploadCheck } from './metadata-store.js';
import { fileForRead, fileForReadSql, fileRow, fileSql, n, type FileForReadRow, type FileRow } from './file-for-read.js';
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

const FILE_FOR_READ = fileForReadSql('$1');
const FILE = fileSql('$1');
/** The GC watermark as a scalar subquery (null without a gc_state row). */
const WATERMARK = `(select greatest(pruned_through, coalesce((select max(seq) from gc_log), 0)) from gc_state where id = 1)`;

export class PgReads {
  constructor(private readonly pool: pg.Pool) {}

  private async rows<R>(name: string, text: string, values: unknown[]): Promise<R[]> {
    return (await this.pool.query({ name, text, values })).rows as R[];
  }

  async getFileForRead(path: string): Promise<{ file: FileWithContent; blocks: BlockRef[] } | null> {
    return fileForRead(await this.rows<FileForReadRow>('s3dedup_file_for_read', FILE_FOR_READ, [path]));
  }

  async getFile(path: string): Promise<FileWithContent | null> {
    const [r] = await this.rows<FileRow>('s3dedup_file', FILE, [path]);
    return r ? fileRow(r) : null;
  }

  async hasContent(hash: string): Promise<boolean> {
    return (await this.rows('s3dedup_has_content', `select 1 from contents where hash = $1`, [hash])).length > 0;
  }

  async blockStoredSize(hash: string): Promise<number | undefined> {
    const [r] = await this.rows<{ stored_size: unknown }>('s3dedup_block_stored_size', `select stored_size from blocks where hash = $1`, [hash]);
    return r ? n(r.stored_size) : undefined;
  }

  async gcWatermark(): Promise<number> {
    const [r] = await this.rows<{ w: unknown }>('s3dedup_gc_watermark', `select ${WATERMARK} as w`, []);
    return n(r.w ?? 0);
  }

  /** One statement, so one snapshot and one round trip. */
  async watermarkAndContent(hash: string): Promise<UploadCheck> {
    const [r] = await this.rows<{ w: unknown; has: boolean }>(
      's3dedup_watermark_and_content',
      `select ${WATERMARK} as w, exists(select 1 from contents where hash = $1) as has`,
      [hash],
    );
    return { startSeq: n(r.w ?? 0), contentExists: r.has };
  }
}
