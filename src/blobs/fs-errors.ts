// Turning file-system and SQLite errors of the local blob stores into the BlobStore errors
// (blob-store.ts): nothing above a store sees an errno.
import { BlobExistsError, BlobNotFoundError, BlobStoreError } from '../errors.js';

/** The `code` of a Node system error (`ENOENT`, `SQLITE_BUSY`, ...), if it has one. */
export function errnoCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * The error a store call reports for `err`: the abort reason when `signal` fired, a BlobStore
 * error as it is, anything else a BlobStoreError naming the store, the call and the code.
 *
 * @example
 * throw toBlobStoreError(err, 'file:///data/blobs', 'get blocks/ab…');
 */
export function toBlobStoreError(err: unknown, describe: string, what: string, signal?: AbortSignal): unknown {
  if (signal?.aborted) return signal.reason;
  if (err instanceof BlobExistsError || err instanceof BlobNotFoundError || err instanceof BlobStoreError) return err;
  const code = errnoCode(err);
  const detail = err instanceof Error ? err.message : String(err);
  return new BlobStoreError(`${describe}: ${what} failed${code ? ` (${code})` : ''}: ${detail}`, { cause: err });
}
