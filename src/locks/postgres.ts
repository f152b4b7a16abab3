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

export class PostgresLockManager implements LockManager {
  /** lock_timeout each pooled session has now: set once, not before every lock (a round trip each). */
  private readonly sessionTimeout = new WeakMap<pg.PoolClient, number>();

  constructor(
    private readonly pool: pg.Pool,
    private readonly defaultTimeoutMs = 30_000,
  ) {}

  async withLocks<T>(keys: string[], fn: () => Promise<T>, options: LockOptions = {}): Promise<T> {
    const timeoutMs = options.timeoutMs ?? this.defaultTimeoutMs;
    const ids = [...new Set(keys)].map((k) => ({ key: k, id: advisoryLockId(k) }));
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      throw new AppError('UNAVAILABLE', `lock database unavailable: ${(err as Error).message}`, { cause: err });
    }
    const taken: string[] = [];
    let broken = false;
    try {
      const ms = Math.max(1, Math.floor(timeoutMs));
      if (this.sessionTimeout.get(client) !== ms) {
        await client.query(`set lock_timeout = ${ms}`);
        this.sessionTimeout.set(client, ms);
      }
      for (const { key, id } of ids) {
        if (options.signal?.aborted) throw new AppError('CLIENT_ABORTED', 'request aborted while waiting for a lock');
        try {
          await client.query('select pg_advisory_lock($1::bigint)', [id]);
        } catch (err) {
          if ((err as { code?: string }).code === '55P03') {
            throw new AppError('LOCK_TIMEOUT', `timed out after ${timeoutMs} ms waiting for lock ${key}`, { cause: err });
          }
          throw err;
        }
        taken.push(id);
      }
      return await fn();
    } catch (err) {
      if (!(err instanceof AppError)) broken = isConnectionError(err);
      throw err;
    } finally {
      try {
        for (const id of taken.reverse()) await client.query('select pg_advisory_unlock($1::bigint)', [id]);
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
