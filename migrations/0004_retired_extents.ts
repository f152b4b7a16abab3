// Extents the cleaner has rewritten (compacted): no block row names them any more, but a GET
// that looked its blocks up before the rewrite may still be reading them, so they are deleted
// only once they have been retired for the grace period (docs/gc.md, "Compacting extents").
// Until then the full scan's orphan sweep and fsck count them as known.
import type { Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('retired_extents')
    .addColumn('id', 'text', (c) => c.primaryKey())
    // Unix ms
    .addColumn('retired_at', 'bigint', (c) => c.notNull())
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('retired_extents').execute();
}
