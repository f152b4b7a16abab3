// In-process locks for a single server: a FIFO queue of waiters per key.
import { AppError } from '../errors.js';
import type { LockManager, LockOptions } from './lock-manager.js';

interface Waiter {
  grant: () => void;
}

export class MemoryLockManager implements LockManager {
  /** key -> waiters queued behind the current holder (present while the key is held). */
  private readonly held = new Map<string, Waiter[]>();

  constructor(private readonly defaultTimeoutMs = 30_000) {}

  async withLocks<T>(keys: string[], fn: () => Promise<T>, options: LockOptions = {}): Promise<T> {
    const taken: string[] = [];
    try {
      for (const key of [...new Set(keys)]) {
        await this.acquire(key, options);
        taken.push(key);
      }
      return await fn();
    } finally {
      for (const key of taken.reverse()) this.release(key);
    }
  }

  async close(): Promise<void> {}

  private acquire(key: string, { timeoutMs = this.defaultTimeoutMs, signal }: LockOptions): Promise<void> {
    if (signal?.aborted) return Promise.reject(new AppError('CLIENT_ABORTED', 'request aborted before taking a lock'));
    const queue = this.held.get(key);
    if (!queue) {
      this.held.set(key, []);
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        grant: () => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      const giveUp = (err: Error) => {
        const i = queue.indexOf(waiter);
        if (i >= 0) queue.splice(i, 1);
        signal?.removeEventListener('abort', onAbort);
        reject(err);
      };
      const timer = setTimeout(() => giveUp(new AppError('LOCK_TIMEOUT', `timed out after ${timeoutMs} ms waiting for lock ${key}`)), timeoutMs);
      const onAbort = () => {
        clearTimeout(timer);
        giveUp(new AppError('CLIENT_ABORTED', 'request aborted while waiting for a lock'));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      queue.push(waiter);
    });
  }

  private release(key: string): void {
    const queue = this.held.get(key);
    if (!queue) return;
    const next = queue.shift();
    if (next) next.grant();
    else this.held.delete(key);
  }
}
