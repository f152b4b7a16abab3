// PostgreSQL advisory locks: stable ids, exclusion across separate pools (as across
// instances), and a clear 503 when the wait times out.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors.js';
import { createPgPool } from '../../src/meta/postgres.js';
import { advisoryLockId, PostgresLockManager } from '../../src/locks/postgres.js';
import { uid } from '../support/ft.js';
import { pgFromInject } from '../support/s3-client.js';

/** Holds `key` through `m` until release() is called; resolves once it is held. */
async function holdLock(m: PostgresLockManager, key: string): Promise<{ release(): Promise<void> }> {
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  let entered!: () => void;
  const inside = new Promise<void>((r) => (entered = r));
  const holder = m.withLocks([key], async () => {
    entered();
    await held;
  });
  await inside;
  return {
    release: async () => {
      release();
      await holder;
    },
  };
}

describe('PostgresLockManager', () => {
  let a: PostgresLockManager;
  let b: PostgresLockManager;
  beforeAll(() => {
    const pg = pgFromInject();
    const opts = { ...pg, maxConnections: 4 };
    a = new PostgresLockManager(createPgPool(opts), 5_000);
    b = new PostgresLockManager(createPgPool(opts), 5_000);
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
  });

  it('derives the same lock id on every build (pinned values)', () => {
    expect(advisoryLockId('path:a.txt')).toBe('-6814242750605524392');
    expect(advisoryLockId(`content:${'0'.repeat(64)}`)).toBe('-1761512382810383942');
  });

  it('excludes a second holder from another pool until the first releases', async () => {
    const key = `path:lock-${uid()}`;
    const order: string[] = [];
    let releaseFirst!: () => void;
    const firstHolds = new Promise<void>((r) => (releaseFirst = r));
    let firstIn!: () => void;
    const firstEntered = new Promise<void>((r) => (firstIn = r));
    const first = a.withLocks([key], async () => {
      order.push('a in');
      firstIn();
      await firstHolds;
      order.push('a out');
    });
    await firstEntered;
    const second = b.withLocks([key], async () => {
      order.push('b in');
    });
    await new Promise((r) => setTimeout(r, 200));
    expect(order).toEqual(['a in']);
    releaseFirst();
    await Promise.all([first, second]);
    expect(order).toEqual(['a in', 'a out', 'b in']);
  });

  it('answers LOCK_TIMEOUT (503) when the wait exceeds the timeout, and releases on error', async () => {
    const key = `content:lock-${uid()}`;
    const holder = await holdLock(a, key);
    const err = await b.withLocks([key], async () => 'never', { timeoutMs: 200 }).catch((e) => e);
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).status).toBe(503);
    expect((err as AppError).message).toMatch(/timed out after 200 ms/);
    await holder.release();
    await expect(a.withLocks([key], async () => {
      throw new Error('boom');
    })).rejects.toThrow('boom');
    expect(await b.withLocks([key], async () => 'free')).toBe('free');
  });

  it("sets each pooled session's lock_timeout once, and again when a call asks for another", async () => {
    const one = new PostgresLockManager(createPgPool({ ...pgFromInject(), maxConnections: 1 }), 60_000);
    try {
      const key = `path:timeout-${uid()}`;
      const timeout = async () => (await one['pool'].query<{ lock_timeout: string }>('show lock_timeout')).rows[0].lock_timeout;
      expect(await one.withLocks([key], async () => 'first')).toBe('first');
      expect(await timeout()).toBe('1min'); // the same session, its lock_timeout kept
      const holder = await holdLock(a, key);
      const started = Date.now();
      const err = await one.withLocks([key], async () => 'never', { timeoutMs: 150 }).catch((e) => e);
      expect((err as AppError).message).toMatch(/timed out after 150 ms/);
      expect(Date.now() - started).toBeLessThan(5_000);
      await holder.release();
      expect(await one.withLocks([key], async () => 'default again')).toBe('default again');
      expect(await timeout()).toBe('1min');
    } finally {
      await one.close();
    }
  });

  it('takes several keys in one call and, when one of them times out, holds none of them', async () => {
    const [first, second] = [`path:multi-${uid()}`, `content:multi-${uid()}`];
    const holder = await holdLock(a, second);
    const err = await b.withLocks([first, second], async () => 'never', { timeoutMs: 150 }).catch((e) => e);
    expect((err as AppError).message).toMatch(/timed out after 150 ms waiting for lock .*multi/);
    // The first key, taken before the second timed out, was released with the session.
    expect(await a.withLocks([first], async () => 'free', { timeoutMs: 2_000 })).toBe('free');
    await holder.release();
    expect(await b.withLocks([first, second], async () => 'both')).toBe('both');
  });
});
