// Several s3dedup schemas in one PostgreSQL database, and several instances opening one new
// schema at once: each schema gets its own tables and migration bookkeeping, and a start racing
// another start on the same schema succeeds.
import { sql, type Kysely } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { configureLogger } from '../../src/log.js';
import { migrateToLatest } from '../../src/meta/migrate.js';
import { openPostgres } from '../../src/meta/postgres.js';
import type { Database } from '../../src/meta/schema.js';
import { uid } from '../support/ft.js';
import { dropSchema } from '../support/postgres.js';
import { pgFromInject } from '../support/s3-client.js';

configureLogger({ level: 'silent' }); // migrateToLatest logs every migration at info

async function tablesIn(db: Kysely<Database>, schema: string): Promise<string[]> {
  const { rows } = await sql<{ t: string }>`select table_name as t from information_schema.tables where table_schema = ${schema} order by 1`.execute(db);
  return rows.map((r) => r.t);
}

describe('PostgreSQL schemas', () => {
  const info = pgFromInject();
  const made: string[] = [];
  const schemaName = () => {
    const s = `s_${uid()}${uid()}`;
    made.push(s);
    return s;
  };
  afterAll(async () => {
    for (const s of made) await dropSchema(info, s);
  });

  it('migrates a second schema in a database where another one is already migrated', async () => {
    const [first, second] = [schemaName(), schemaName()];
    const a = await openPostgres({ ...info, maxConnections: 1, schema: first });
    await migrateToLatest(a);
    const b = await openPostgres({ ...info, maxConnections: 1, schema: second });
    try {
      await migrateToLatest(b);
      const expected = await tablesIn(a, first);
      expect(expected).toContain('files');
      expect(expected).toContain('kysely_migration');
      expect(await tablesIn(b, second)).toEqual(expected);
      // Each schema keeps its own record of the migrations applied.
      const applied = await sql<{ n: number }>`select count(*)::int as n from kysely_migration`.execute(b);
      expect(applied.rows[0].n).toBeGreaterThan(0);
      await migrateToLatest(b); // and a restart finds nothing left to do
    } finally {
      await a.destroy();
      await b.destroy();
    }
  });

  it('lets instances starting together create and migrate one new schema', async () => {
    const schema = schemaName();
    const dbs = await Promise.all([1, 2, 3, 4].map(() => openPostgres({ ...info, maxConnections: 2, schema })));
    try {
      await Promise.all(dbs.map((db) => migrateToLatest(db)));
      await dbs[0].insertInto('gc_state').values({ id: 2, pruned_through: 0 }).execute();
      for (const db of dbs) expect(await db.selectFrom('gc_state').select('id').where('id', '=', 2).execute()).toHaveLength(1);
    } finally {
      await Promise.all(dbs.map((db) => db.destroy()));
    }
  });
});
