// Which SQL engine a Kysely instance talks to, for the few places the two differ
// (column types in migrations, the PostgreSQL-only advisory barrier).
import type { Kysely } from 'kysely';

export function isPostgres(db: Kysely<any>): boolean {
  return db.getExecutor().adapter.constructor.name === 'PostgresAdapter';
}
