// Runs the schema migrations of migrations/ at start. The list is static so the compiled build
// and tsx see the same set without scanning a directory.
import { Migrator, sql, type Kysely, type Migration, type MigrationProvider } from 'kysely';
import * as m0001 from '../../migrations/0001_initial.js';
import * as m0002 from '../../migrations/0002_gc_log.js';
import * as m0003 from '../../migrations/0003_extents.js';
import * as m0004 from '../../migrations/0004_retired_extents.js';
import * as m0005 from '../../migrations/0005_pg_commit_functions.js';
import { moduleLogger } from '../log.js';
import { isPostgres } from './dialect.js';

const MIGRATIONS: Record<string, Migration> = {
  '0001_initial': m0001,
  '0002_gc_log': m0002,
  '0003_extents': m0003,
  '0004_retired_extents': m0004,
  '0005_pg_commit_functions': m0005,
};

class StaticProvider implements MigrationProvider {
  async getMigrations(): Promise<Record<string, Migration>> {
    return MIGRATIONS;
  }
}

/**
 * On PostgreSQL, the schema the connections work in (search_path). Kysely's migrator must be told
 * it: otherwise its bookkeeping tables in any other schema of the database count as present, and
 * it never creates them in this one (a second s3dedup schema in one database failed to migrate).
 */
async function postgresSchema(db: Kysely<any>): Promise<string | undefined> {
  if (!isPostgres(db)) return undefined;
  const { rows } = await sql<{ schema: string }>`select current_schema() as schema`.execute(db);
  return rows[0]?.schema;
}

/** Brings the database schema up to date; throws with the failing migration's name. */
export async function migrateToLatest(db: Kysely<any>): Promise<void> {
  const log = moduleLogger('meta.migrate');
  const migrator = new Migrator({ db, provider: new StaticProvider(), migrationTableSchema: await postgresSchema(db) });
  const { error, results } = await migrator.migrateToLatest();
  for (const r of results ?? []) {
    if (r.status === 'Success') log.info({ migration: r.migrationName }, 'applied migration');
    if (r.status === 'Error') log.error({ migration: r.migrationName }, 'migration failed');
  }
  if (error) throw new Error(`database migration failed: ${String((error as Error).message ?? error)}`, { cause: error });
}
