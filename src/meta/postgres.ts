// Opens the PostgreSQL metadata database (pg pool through Kysely's PostgresDialect).
import pg from 'pg';
import { Kysely, PostgresDialect } from 'kysely';
import type { Database } from './schema.js';
import { registerPgPool } from './pg-reads.js';

export interface PostgresOptions {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  /** pool size (connections) */
  maxConnections: number;
  /** schema to work in (created if missing); default "public" */
  schema?: string;
  /** ms to wait for a free pooled connection before failing */
  connectionTimeoutMs?: number;
}

/** int8 (bigint) and numeric columns hold sizes, versions and ms times: all below 2^53. */
const types = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === 20 || oid === 1700) return (v: string) => Number(v);
    return pg.types.getTypeParser(oid, format as 'text');
  },
} as unknown as pg.CustomTypesConfig;

export function createPgPool(o: PostgresOptions, max = o.maxConnections): pg.Pool {
  const pool = new pg.Pool({
    host: o.host,
    port: o.port,
    user: o.user,
    password: o.password,
    database: o.database,
    max,
    connectionTimeoutMillis: o.connectionTimeoutMs ?? 10_000,
    types,
    // Every connection works in the configured schema; quoted, so any name is safe.
    options: o.schema ? `-c search_path="${o.schema.replace(/"/g, '""')}"` : undefined,
  });
  // An idle client that loses its server emits 'error' on the pool; the next query reports it.
  pool.on('error', () => {});
  return pool;
}

/** PostgreSQL's unique_violation and duplicate_schema error codes. */
const ALREADY_THERE = new Set(['23505', '42P06']);

/**
 * `create schema if not exists` is not atomic: instances starting together on a new schema can
 * both pass the check, and the loser fails on the catalog's unique index. Losing that race is fine.
 */
async function createSchema(admin: pg.Pool, schema: string): Promise<void> {
  try {
    await admin.query(`create schema if not exists "${schema.replace(/"/g, '""')}"`);
  } catch (err) {
    if (!ALREADY_THERE.has((err as { code?: string }).code ?? '')) throw err;
  }
}

export async function openPostgres(o: PostgresOptions): Promise<Kysely<Database>> {
  if (o.schema) {
    const admin = createPgPool({ ...o, schema: undefined }, 1);
    try {
      await createSchema(admin, o.schema);
    } finally {
      await admin.end();
    }
  }
  const pool = createPgPool(o);
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  registerPgPool(db, pool);
  return db;
}
