// Exclusive named locks around metadata commits. Callers take keys in a fixed order (the path,
// then the content) so two commits can never wait on each other in a cycle.
export interface LockOptions {
  /** Give up after this many milliseconds with AppError LOCK_TIMEOUT (503). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface LockManager {
  /** Runs `fn` while holding every key, acquired in the order given, released in reverse. */
  withLocks<T>(keys: string[], fn: () => Promise<T>, options?: LockOptions): Promise<T>;
  close(): Promise<void>;
}

/** Lock key for a Filetracker path. */
export const pathKey = (path: string): string => `path:${path}`;
/** Lock key for a content (by its SHA-256). */
export const contentKey = (hash: string): string => `content:${hash}`;
