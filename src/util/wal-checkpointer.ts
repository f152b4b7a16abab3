// Checkpoints SQLite WAL databases from a thread of their own.
//
// SQLite's automatic checkpoint runs inside the COMMIT that takes the WAL past
// wal_autocheckpoint pages (1000 by default): it copies the WAL's pages back into the database
// file and fsyncs both, on the event loop. A small PUT dirties about 7 pages across the metadata
// database and the pack index (SHA-256 keys land on distinct B-tree leaves), so that default
// checkpointed every ~150 PUTs, and a 16-connection PUT load ran about 30% faster once the
// checkpoints left the event loop (bench/README.md).
//
// Here one worker thread per process holds a connection to each registered database and, every
// `intervalMs`, runs a PASSIVE checkpoint, which never waits and never blocks a writer. PASSIVE
// alone cannot reset the WAL while commits keep arriving (the next writer starts the WAL over
// only if every frame was copied), so once it holds more than `restartFrames` frames a RESTART
// checkpoint holds writers off for the few frames PASSIVE has not copied and lets the next
// writer start from the beginning. Writers that find the lock taken retry asynchronously
// (util/sqlite-busy.ts). Each registered connection keeps wal_autocheckpoint as a backstop
// should this thread fall behind or die.
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type BetterSqlite3 from 'better-sqlite3';
import { moduleLogger } from '../log.js';

export interface CheckpointerSettings {
  /** ms between two PASSIVE checkpoints of each database */
  intervalMs: number;
  /** WAL frames above which a checkpoint is RESTART rather than PASSIVE */
  restartFrames: number;
  /** wal_autocheckpoint (pages) left on the registered connection as a backstop */
  backstopPages: number;
}

export const DEFAULT_CHECKPOINTER: CheckpointerSettings = { intervalMs: 100, restartFrames: 4000, backstopPages: 16_000 };

/** The thread's code, plain CommonJS so it runs the same under tsc, tsx and vitest. */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const { intervalMs, restartFrames } = workerData;
const dbs = new Map(); // path -> { db, refs }
const report = (path, err) => parentPort.postMessage({ error: { path, code: err && err.code, message: String(err && err.message || err) } });
parentPort.on('message', (m) => {
  const entry = dbs.get(m.path);
  if (m.op === 'add') {
    if (entry) { entry.refs++; return; }
    try {
      const db = new Database(m.path, { fileMustExist: true });
      // RESTART waits this long for the writer lock and for readers, then leaves the rest for the next tick.
      db.pragma('busy_timeout = 20');
      db.pragma('synchronous = ' + m.synchronous);
      dbs.set(m.path, { db, refs: 1 });
    } catch (err) { report(m.path, err); }
  } else if (m.op === 'remove') {
    if (entry && --entry.refs === 0) {
      dbs.delete(m.path);
      try { entry.db.close(); } catch (err) { report(m.path, err); }
    }
    // Acknowledged once this thread no longer has the file open, so the caller may delete it.
    parentPort.postMessage({ removed: m.id });
    if (dbs.size === 0) process.exit(0);
  }
});
setInterval(() => {
  for (const [path, { db }] of dbs) {
    try {
      const [r] = db.pragma('wal_checkpoint(PASSIVE)');
      if (r.log > restartFrames) db.pragma('wal_checkpoint(RESTART)');
    } catch (err) {
      if (err.code !== 'SQLITE_BUSY' && err.code !== 'SQLITE_LOCKED') report(path, err);
    }
  }
}, intervalMs);
`;

let thread: Worker | null = null;
let registered = 0;
let nextRemoval = 0;
/**
 * Removals posted to each thread and not yet acknowledged, by id: resolved by the ack or by
 * that thread's exit. Per thread, because a thread that is ending can exit while a removal
 * waits on the thread started after it, which may not even have opened the file yet.
 */
const removals = new Map<Worker, Map<number, () => void>>();

function ensureThread(s: CheckpointerSettings): Worker {
  if (thread) return thread;
  const driver = createRequire(import.meta.url).resolve('better-sqlite3');
  const w = new Worker(WORKER_SOURCE, { eval: true, workerData: { driver, intervalMs: s.intervalMs, restartFrames: s.restartFrames } });
  w.unref(); // never keeps the process alive
  const waiting = new Map<number, () => void>();
  removals.set(w, waiting);
  const settle = (id: number) => {
    waiting.get(id)?.();
    waiting.delete(id);
  };
  w.on('message', (m: { error?: { path: string; code?: string; message: string }; removed?: number }) => {
    if (m.error) moduleLogger('sqlite.checkpoint').warn(m.error, 'background WAL checkpoint failed; the backstop checkpoint on commit still runs');
    if (m.removed !== undefined) settle(m.removed);
  });
  w.on('error', (err) => moduleLogger('sqlite.checkpoint').error({ err }, 'WAL checkpoint thread died'));
  w.on('exit', () => {
    if (thread === w) thread = null;
    // A thread that has exited holds no file open: its own removals are done.
    for (const id of [...waiting.keys()]) settle(id);
    removals.delete(w);
  });
  thread = w;
  return w;
}

/**
 * Hands the checkpoints of the WAL database that `db` has open at `path` to the background
 * thread, and sets the backstop on `db`.
 *
 * @param synchronous the database's synchronous setting: the checkpointing connection's decides how its fsyncs go
 * @param settings the thread's; a thread already running keeps those it was started with
 * @returns a function that stops checkpointing `path` (call it before closing `db`); the thread ends with the last one.
 *   Its promise resolves once the thread has closed its connection, so the files may be removed.
 * @example
 * const stop = checkpointInBackground(db, '/data/s3dedup.sqlite', 'NORMAL');
 * // ... at shutdown: await stop(); db.close();
 */
export function checkpointInBackground(
  db: BetterSqlite3.Database,
  path: string,
  synchronous: 'NORMAL' | 'FULL',
  settings: CheckpointerSettings = DEFAULT_CHECKPOINTER,
): () => Promise<void> {
  db.pragma(`wal_autocheckpoint = ${settings.backstopPages}`);
  const w = ensureThread(settings);
  w.postMessage({ op: 'add', path, synchronous });
  registered++;
  let stopped: Promise<void> | null = null;
  return () => {
    if (stopped) return stopped;
    registered--;
    const id = nextRemoval++;
    const waiting = removals.get(w);
    // A thread that has already exited (it died) holds no file open.
    stopped = waiting ? new Promise<void>((resolve) => waiting.set(id, resolve)) : Promise.resolve();
    w.postMessage({ op: 'remove', path, id });
    if (registered === 0 && thread === w) thread = null; // the thread exits once it has closed the last one
    return stopped;
  };
}

/** Whether a checkpoint thread is running (for tests). */
export function checkpointThreadRunning(): boolean {
  return thread !== null;
}
