// PostgreSQL advisory locks, so several server instances on one database exclude each other.
//
// Lock ids: the first 8 bytes of SHA-256(key) read as a signed 64-bit integer (big-endian).
// The same key gives the same id on every build, platform and instance.
//
// Locks are session-level, taken on a connection from a pool of their own (so a commit that
// holds a lock connection can always get a metadata connection: no pool deadlock). Waiting is
// pg_advisory_lock's own wait inside the server, bounded by `SET lock_timeout`: no polling.
// A lock is held only around a metadata commit, never while a request streams its body.
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { AppError } from '../errors.js';
import type { LockManager, LockOptions } from './lock-manager.js';

/** Stable advisory-lock id of a key, as a decimal string (a JS number cannot hold int8). */
export function advisoryLockId(key: string): string {
  const digest = createHash('sha256').update(key, 'utf8').digest();
  return digest.readBigInt64BE(0).toString();
}

const LOCK = 'select pg_advisory_lock(id) from unnest($1::bigint[]) as id';
const UNLOCK = 'select pg_advisory_unlock(id) from unnest($1::bigint[]) as id';

export class PostgresLockManager implements LockManager {
  /** lock_timeout each pooled session has now: set once, not before every lock (a round trip each). */
  private readonly sessionTimeout = new WeakMap<pg.PoolClient, number>();

  constructor(
    private readonly pool: pg.Pool,
    private readonly defaultTimeoutMs = 30_000,
  ) {}

  async withLocks<T>(keys: string[], fn: () => Promise<T>, options: LockOptions = {}): Promise<T> {
    const timeoutMs = options.timeoutMs ?? this.defaultTimeoutMs;
    const distinct = [...new Set(keys)];
    const ids = distinct.map(advisoryLockId);
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      throw new AppError('UNAVAILABLE', `lock database unavailable: ${(err as Error).message}`, { cause: err });
    }
    let held = false;
    let broken = false;
    try {
      const ms = Math.max(1, Math.floor(timeoutMs));
      if (this.sessionTimeout.get(client) !== ms) {
        await client.query(`set lock_timeout = ${ms}`);
        this.sessionTimeout.set(client, ms);
      }
      if (options.signal?.aborted) throw new AppError('CLIENT_ABORTED', 'request aborted while waiting for a lock');
      try {
        // All of them in one round trip, taken in the order given (unnest keeps the array's order).
        await client.query({ name: 's3dedup_lock', text: LOCK, values: [ids] });
      } catch (err) {
        broken = true; // the first of them may be held: closing the session releases it
        if ((err as { code?: string }).code === '55P03') {
          throw new AppError('LOCK_TIMEOUT', `timed out after ${timeoutMs} ms waiting for lock ${distinct.join(', ')}`, { cause: err });
        }
        throw err;
      }
      held = true;
      return await fn();
    } catch (err) {
      if (!(err instanceof AppError) && isConnectionError(err)) broken = true;
      throw err;
    } finally {
      try {
        if (held && !broken) await client.query({ name: 's3dedup_unlock', text: UNLOCK, values: [ids] });
      } catch {
        broken = true; // closing the session releases whatever it still holds
      }
      client.release(broken);
    }
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

function isConnectionError(err: unknown): boolean {
  const code = (err as { code?: string }).code ?? '';
  return code.startsWith('08') || code === 'ECONNRESET' || code === 'ECONNREFUSED' || code === '57P01';
}
