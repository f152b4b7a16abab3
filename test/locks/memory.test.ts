// MemoryLockManager: exclusion, FIFO hand-over, independence of keys, timeouts, cancellation.
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors.js';
import { MemoryLockManager } from '../../src/locks/memory.js';

/** A promise with its resolve function, to hold a lock until the test says so. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

/** Lets queued microtasks and timers of 0 ms run. */
const tick = () => sleep(5);

async function rejection(p: Promise<unknown>): Promise<AppError> {
  const err = await p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AppError);
  return err as AppError;
}

describe('MemoryLockManager', () => {
  it('lets one holder at a time run on a key, with real interleaving', async () => {
    const locks = new MemoryLockManager();
    let inside = 0;
    let maxInside = 0;
    let counter = 0;
    const task = async (i: number) =>
      locks.withLocks(['path:x'], async () => {
        inside++;
        maxInside = Math.max(maxInside, inside);
        const read = counter;
        await sleep(i % 3); // yield to the event loop while holding the lock
        counter = read + 1; // a lost update if two ran at once
        inside--;
        return i;
      });
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => task(i)));
    expect(results).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(maxInside).toBe(1);
    expect(counter).toBe(50);
  });

  it('grants waiters in the order they queued', async () => {
    const locks = new MemoryLockManager();
    const held = gate();
    const order: number[] = [];
    const first = locks.withLocks(['k'], () => held.promise);
    await tick();
    const waiters = [1, 2, 3, 4, 5].map((i) =>
      locks.withLocks(['k'], async () => {
        order.push(i);
        await sleep(1);
      }),
    );
    await tick();
    expect(order).toEqual([]);
    held.open();
    await Promise.all([first, ...waiters]);
    expect(order).toEqual([1, 2, 3, 4, 5]);
  });

  it('runs holders of different keys in parallel', async () => {
    const locks = new MemoryLockManager(2_000);
    const both = gate();
    let entered = 0;
    const task = (key: string) =>
      locks.withLocks([key], async () => {
        if (++entered === 2) both.open();
        // Each holder waits until the other is inside too: only possible if they overlap.
        await Promise.race([both.promise, sleep(1_000).then(() => Promise.reject(new Error(`${key} ran alone`)))]);
      });
    await Promise.all([task('path:a'), task('path:b')]);
    expect(entered).toBe(2);
  });

  it('takes several keys at once and treats a repeated key as one', async () => {
    const locks = new MemoryLockManager(500);
    await expect(locks.withLocks(['path:a', 'content:h', 'path:a'], async () => 'ok')).resolves.toBe('ok');
    // Both keys are free again afterwards.
    await expect(locks.withLocks(['content:h'], async () => 1, { timeoutMs: 50 })).resolves.toBe(1);
    await expect(locks.withLocks(['path:a'], async () => 2, { timeoutMs: 50 })).resolves.toBe(2);
  });

  it('gives up after the timeout with LOCK_TIMEOUT (503) and never runs fn', async () => {
    const locks = new MemoryLockManager(60_000);
    const held = gate();
    const holder = locks.withLocks(['k'], () => held.promise);
    await tick();
    let ran = false;
    const started = Date.now();
    const err = await rejection(locks.withLocks(['k'], async () => void (ran = true), { timeoutMs: 50 }));
    expect(Date.now() - started).toBeGreaterThanOrEqual(40);
    expect(err.code).toBe('LOCK_TIMEOUT');
    expect(err.status).toBe(503);
    // The timed-out waiter left the queue: the next one is served when the holder is done.
    const next = locks.withLocks(['k'], async () => 'next');
    held.open();
    await holder;
    await expect(next).resolves.toBe('next');
    expect(ran).toBe(false);
  });

  it('uses the constructor default timeout when none is given', async () => {
    const locks = new MemoryLockManager(30);
    const held = gate();
    const holder = locks.withLocks(['k'], () => held.promise);
    await tick();
    expect((await rejection(locks.withLocks(['k'], async () => undefined))).code).toBe('LOCK_TIMEOUT');
    held.open();
    await holder;
  });

  it('releases the keys already taken when a later key times out', async () => {
    const locks = new MemoryLockManager();
    const held = gate();
    const holder = locks.withLocks(['b'], () => held.promise);
    await tick();
    const err = await rejection(locks.withLocks(['a', 'b'], async () => undefined, { timeoutMs: 30 }));
    expect(err.code).toBe('LOCK_TIMEOUT');
    // 'a' was taken and must have been released.
    await expect(locks.withLocks(['a'], async () => 'a free', { timeoutMs: 30 })).resolves.toBe('a free');
    held.open();
    await holder;
  });

  it('stops waiting when the signal aborts', async () => {
    const locks = new MemoryLockManager(60_000);
    const held = gate();
    const holder = locks.withLocks(['k'], () => held.promise);
    await tick();
    const ac = new AbortController();
    let ran = false;
    const waiting = locks.withLocks(['k'], async () => void (ran = true), { signal: ac.signal });
    await tick();
    ac.abort();
    const err = await rejection(waiting);
    expect(err.code).toBe('CLIENT_ABORTED');
    held.open();
    await holder;
    await expect(locks.withLocks(['k'], async () => 'free', { timeoutMs: 30 })).resolves.toBe('free');
    expect(ran).toBe(false);
  });

  // A request whose client is already gone must not queue behind a holder: an abort event
  // never fires for a signal that is aborted before the listener is added.
  it('does not queue with a signal that is already aborted', async () => {
    const locks = new MemoryLockManager(60_000);
    const held = gate();
    const holder = locks.withLocks(['k'], () => held.promise);
    await tick();
    let ran = false;
    const waiting = locks.withLocks(['k'], async () => void (ran = true), { signal: AbortSignal.abort(), timeoutMs: 300 });
    const err = await rejection(waiting);
    expect(err.code).toBe('CLIENT_ABORTED');
    held.open();
    await holder;
    expect(ran).toBe(false);
  });

  it('releases the locks when fn throws', async () => {
    const locks = new MemoryLockManager();
    await expect(
      locks.withLocks(['a', 'b'], async () => {
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    await expect(locks.withLocks(['a', 'b'], async () => 'again', { timeoutMs: 30 })).resolves.toBe('again');
    // A waiter queued behind a failing holder still gets its turn.
    const failing = locks.withLocks(['c'], async () => {
      await sleep(10);
      throw new Error('late boom');
    });
    const after = locks.withLocks(['c'], async () => 'after', { timeoutMs: 1_000 });
    await expect(failing).rejects.toThrow('late boom');
    await expect(after).resolves.toBe('after');
  });
});
