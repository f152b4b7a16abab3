// Retrying a SQLite write while another process holds the database's write lock, without
// blocking the event loop. SQLite's own busy wait (busy_timeout) sleeps inside the call, with
// this process unable to serve anything meanwhile; callers set busy_timeout to 0 for their write
// and let this repeat the attempt asynchronously instead.

/** How long a write keeps retrying while another process holds the write lock (as busy_timeout), ms. */
export const BUSY_WAIT_MS = 5_000;

export const isSqliteBusy = (err: unknown): boolean => (err as { code?: string } | null)?.code === 'SQLITE_BUSY';

/**
 * Runs `attempt` until it does not fail with SQLITE_BUSY, for at most `waitMs`.
 *
 * @example
 * await retryWhileBusy(() => db.transaction(fn).immediate());
 */
export async function retryWhileBusy<T>(attempt: () => T | Promise<T>, waitMs = BUSY_WAIT_MS): Promise<T> {
  const deadline = Date.now() + waitMs;
  for (let n = 0; ; n++) {
    try {
      return await attempt();
    } catch (err) {
      if (!isSqliteBusy(err) || Date.now() > deadline) throw err;
    }
    // A few turns of the event loop first (the holder commits in microseconds), then 1 ms.
    await new Promise((r) => (n < 8 ? setImmediate(r) : setTimeout(r, 1)));
  }
}
