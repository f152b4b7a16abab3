// The garbage-collection log: every blob deletion the cleaner makes is announced here before it
// happens (pending = 1) and acknowledged after (pending = 0 plus a 'done' row with a newer
// seq). An upload commit refuses to reference a key with a pending row or with any row newer
// than the log position it read before it looked for existing blocks (see docs/gc.md).
import type { Kysely } from 'kysely';
import { isPostgres } from '../src/meta/dialect.js';

export async function up(db: Kysely<any>): Promise<void> {
  let table = db.schema.createTable('gc_log');
  table = isPostgres(db)
    ? table.addColumn('seq', 'bigserial', (c) => c.primaryKey())
    : table.addColumn('seq', 'integer', (c) => c.primaryKey().autoIncrement());
  await table
    // blob-store key: blocks/<sha256> or maps/<sha256>
    .addColumn('key', 'text', (c) => c.notNull())
    .addColumn('pending', 'integer', (c) => c.notNull())
    // Unix ms
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('gc_log_key').on('gc_log').columns(['key', 'seq']).execute();
  await db.schema.createIndex('gc_log_pending').on('gc_log').columns(['pending', 'seq']).execute();

  await db.schema
    .createTable('gc_state')
    .addColumn('id', 'integer', (c) => c.primaryKey())
    // Highest seq removed by pruning: an upload that started before it cannot be checked.
    .addColumn('pruned_through', 'bigint', (c) => c.notNull())
    .execute();
  await db.insertInto('gc_state').values({ id: 1, pruned_through: 0 }).execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('gc_log').execute();
  await db.schema.dropTable('gc_state').execute();
}
