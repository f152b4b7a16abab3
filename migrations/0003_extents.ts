// Extents: an upload's new blocks stored together, in content order, in one object
// `extents/<id>` instead of one object each, so a large file costs one request per few MB
// rather than one per block (docs/storage.md, "Extents"). A block row with an extent names the
// object and the offset of its segment in it; one without is a `blocks/<sha256>` object.
import type { Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('blocks').addColumn('extent', 'text').execute();
  await db.schema.alterTable('blocks').addColumn('extent_offset', 'bigint').execute();
  // The cleaner asks whether any row still names an extent before it deletes the object.
  await db.schema.createIndex('blocks_extent').on('blocks').column('extent').execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('blocks_extent').execute();
  await db.schema.alterTable('blocks').dropColumn('extent_offset').execute();
  await db.schema.alterTable('blocks').dropColumn('extent').execute();
}
