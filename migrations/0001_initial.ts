// Initial schema: the namespace (files), contents with their block lists, and blocks, each
// content and block carrying a reference count. Portable Kysely schema (SQLite and PostgreSQL).
import { sql, type Kysely } from 'kysely';
import { isPostgres } from '../src/meta/dialect.js';

/** Paths compare byte-wise (UTF-8 order) on both engines so prefix range scans are exact. */
function pathType(db: Kysely<any>) {
  return isPostgres(db) ? sql`text collate "C"` : sql`text`;
}

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('files')
    .addColumn('path', pathType(db), (c) => c.primaryKey())
    // Filetracker version: Unix seconds.
    .addColumn('version', 'bigint', (c) => c.notNull())
    .addColumn('content_hash', 'text', (c) => c.notNull())
    .addColumn('logical_size', 'bigint', (c) => c.notNull())
    // Unix milliseconds of the last change.
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('files_content_hash').on('files').column('content_hash').execute();

  await db.schema
    .createTable('contents')
    .addColumn('hash', 'text', (c) => c.primaryKey())
    .addColumn('logical_size', 'bigint', (c) => c.notNull())
    // Sum of the stored (compressed) segment sizes.
    .addColumn('stored_size', 'bigint', (c) => c.notNull())
    // CRC-32 of the whole content, unsigned.
    .addColumn('crc32', 'bigint', (c) => c.notNull())
    .addColumn('block_count', 'integer', (c) => c.notNull())
    // Number of files rows naming this content.
    .addColumn('ref_count', 'integer', (c) => c.notNull())
    // Unix ms when ref_count last changed (the cleaner's grace period starts here).
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('contents_ref_count').on('contents').column('ref_count').execute();

  await db.schema
    .createTable('content_blocks')
    .addColumn('content_hash', 'text', (c) => c.notNull())
    .addColumn('idx', 'integer', (c) => c.notNull())
    .addColumn('block_hash', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('content_blocks_pk', ['content_hash', 'idx'])
    .execute();
  await db.schema.createIndex('content_blocks_block').on('content_blocks').column('block_hash').execute();

  await db.schema
    .createTable('blocks')
    .addColumn('hash', 'text', (c) => c.primaryKey())
    .addColumn('size', 'integer', (c) => c.notNull())
    .addColumn('stored_size', 'integer', (c) => c.notNull())
    .addColumn('crc32', 'bigint', (c) => c.notNull())
    // Number of contents rows whose block list names this block (once per content).
    .addColumn('ref_count', 'integer', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('blocks_ref_count').on('blocks').column('ref_count').execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const t of ['files', 'content_blocks', 'contents', 'blocks']) {
    await db.schema.dropTable(t).execute();
  }
}
