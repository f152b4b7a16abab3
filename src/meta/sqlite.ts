// Opens the SQLite metadata database (better-sqlite3 through Kysely's SqliteDialect).
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, SqliteDialect, type SqliteDatabase } from 'kysely';
import { checkpointInBackground } from '../util/wal-checkpointer.js';
import type { Database } from './schema.js';

/** Prepared statements kept per connection (distinct SQL texts; IN-lists of other lengths are new texts). */
const STATEMENT_CACHE = 512;

/**
 * Kysely's SQLite driver prepares every query anew, which cost a fifth of a small PUT's CPU:
 * this keeps the prepared statements by SQL text. Safe because better-sqlite3 runs one
 * statement at a time and Kysely never iterates (streams) on this connection.
 */
function cachingDatabase(sqlite: BetterSqlite3.Database, beforeClose: () => void): SqliteDatabase {
  const statements = new Map<string, BetterSqlite3.Statement>();
  return {
    close: () => {
      beforeClose();
      sqlite.close();
    },
    prepare(text: string) {
      // Kysely opens transactions with a plain `begin`, which takes the write lock only at the
      // first write; another process (WORKERS > 1, a CLI beside the server) committing in
      // between would then fail it with SQLITE_BUSY. IMMEDIATE takes the lock up front, waiting
      // in busy_timeout.
      const sql = text === 'begin' ? 'begin immediate' : text;
      let stmt = statements.get(sql);
      if (!stmt) {
        if (statements.size >= STATEMENT_CACHE) statements.clear();
        stmt = sqlite.prepare(sql);
        statements.set(sql, stmt);
      }
      return stmt as unknown as ReturnType<SqliteDatabase['prepare']>;
    },
  };
}

/** ms a statement waits while another process holds the lock it needs */
export const BUSY_TIMEOUT_MS = 5_000;

/** The better-sqlite3 connection under each Kysely instance openSqlite made (for the hot path). */
const rawConnections = new WeakMap<Kysely<Database>, BetterSqlite3.Database>();

/** The connection under `db` when openSqlite opened it; undefined for any other Kysely. */
export function rawSqlite(db: Kysely<Database>): BetterSqlite3.Database | undefined {
  return rawConnections.get(db);
}

/** One connection: SQLite serialises writers anyway, and Kysely queues queries on it. */
export function openSqlite(path: string): Kysely<Database> {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const sqlite = new BetterSqlite3(path);
  // WAL lets readers run beside the writer; NORMAL sync is durable across process crashes
  // (a power loss may drop the last transactions, never corrupt the file).
  sqlite.pragma('journal_mode = WAL');
  sqlite.pragma('synchronous = NORMAL');
  sqlite.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
  const stopCheckpoints = path === ':memory:' ? async () => {} : checkpointInBackground(sqlite, path, 'NORMAL');
  let stopped: Promise<void> = Promise.resolve();
  const database = cachingDatabase(sqlite, () => (stopped = stopCheckpoints()));
  const db = new Kysely<Database>({ dialect: new SqliteDialect({ database }) });
  rawConnections.set(db, sqlite);
  // Kysely's destroy() does not wait for what close() starts: MetadataStore.close() awaits this.
  checkpointsStopped.set(db, () => stopped);
  return db;
}

const checkpointsStopped = new WeakMap<Kysely<Database>, () => Promise<void>>();

/**
 * Resolves once the background checkpointer has let go of the files of `db` (after
 * `db.destroy()`), so that they may be deleted; at once for any other Kysely.
 */
export function sqliteFilesReleased(db: Kysely<Database>): Promise<void> {
  return checkpointsStopped.get(db)?.() ?? Promise.resolve();
}
