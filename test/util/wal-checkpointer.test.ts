// The background checkpointer on real SQLite files: commits made with the automatic checkpoint
// out of the way still reach the database file, and the WAL stays small because the thread
// restarts it; without the thread the same commits pile up in the WAL.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { configureLogger } from '../../src/log.js';
import { retryWhileBusy } from '../../src/util/sqlite-busy.js';
import { checkpointInBackground, checkpointThreadRunning, type CheckpointerSettings } from '../../src/util/wal-checkpointer.js';

configureLogger({ level: 'silent' });

const FAST: CheckpointerSettings = { intervalMs: 5, restartFrames: 50, backstopPages: 1_000_000 };
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function openDb(): { db: BetterSqlite3.Database; path: string } {
  const dir = mkdtempSync(join(tmpdir(), 'walckpt-'));
  dirs.push(dir);
  const path = join(dir, 'db.sqlite');
  const db = new BetterSqlite3(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 0'); // as the hot path: a busy write is retried asynchronously
  db.exec('create table t (k text primary key, v blob not null)');
  return { db, path };
}

/** `n` transactions of one random-key row each (a new B-tree leaf page for most), yielding as a server would. */
async function commitMany(db: BetterSqlite3.Database, n: number): Promise<void> {
  const insert = db.prepare('insert into t (k, v) values (?, ?)');
  for (let i = 0; i < n; i++) {
    const k = randomBytes(32).toString('hex');
    await retryWhileBusy(() => db.transaction(() => insert.run(k, randomBytes(200))).immediate());
    if (i % 20 === 0) await new Promise((r) => setTimeout(r, 1));
  }
}

const walBytes = (path: string) => statSync(`${path}-wal`).size;

describe('checkpointInBackground', () => {
  it('keeps the WAL small while commits never checkpoint themselves, and the rows reach the database file', async () => {
    const control = openDb();
    control.db.pragma(`wal_autocheckpoint = ${FAST.backstopPages}`);
    const checked = openDb();
    const stop = checkpointInBackground(checked.db, checked.path, 'NORMAL', FAST);
    expect(checked.db.pragma('wal_autocheckpoint', { simple: true })).toBe(FAST.backstopPages);
    expect(checkpointThreadRunning()).toBe(true);

    await commitMany(control.db, 2000);
    await commitMany(checked.db, 2000);

    const uncheckpointed = walBytes(control.path);
    expect(uncheckpointed).toBeGreaterThan(4 << 20); // every commit stayed in the WAL
    expect(walBytes(checked.path)).toBeLessThan(uncheckpointed / 2);
    // The copied pages are in the database file itself, readable by a connection of its own.
    expect(statSync(checked.path).size).toBeGreaterThan(64 * 4096);
    stop();
    checked.db.close();
    control.db.close();
    const reader = new BetterSqlite3(checked.path, { readonly: true });
    expect(reader.prepare('select count(*) as n from t').get()).toEqual({ n: 2000 });
    reader.close();
  });

  it('ends the thread with the last database and starts a new one for the next', async () => {
    const a = openDb();
    const b = openDb();
    const stopA = checkpointInBackground(a.db, a.path, 'NORMAL', FAST);
    const stopB = checkpointInBackground(b.db, b.path, 'NORMAL', FAST);
    stopA();
    expect(checkpointThreadRunning()).toBe(true);
    stopB();
    stopB(); // a second call is a no-op
    expect(checkpointThreadRunning()).toBe(false);
    a.db.close();
    b.db.close();

    const c = openDb();
    const stopC = checkpointInBackground(c.db, c.path, 'NORMAL', FAST);
    expect(checkpointThreadRunning()).toBe(true);
    await commitMany(c.db, 600);
    // The new thread checkpoints into the file (it may still be starting when the commits end
    // on a loaded machine, hence the wait; nothing else checkpoints here).
    const deadline = Date.now() + 10_000;
    while (statSync(c.path).size <= 4096 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(statSync(c.path).size).toBeGreaterThan(4096);
    stopC();
    c.db.close();
  });

  it('lets go of the files by the time stop() resolves, so the directory can be removed at once', async () => {
    // Before stop() waited for the thread, its connection could still open or close the
    // database after a store's close() resolved, leaving -wal/-shm files in a removed directory.
    for (let i = 0; i < 30; i++) {
      const d = openDb();
      const stop = checkpointInBackground(d.db, d.path, 'NORMAL', FAST);
      d.db.prepare('insert into t (k, v) values (?, ?)').run(String(i), Buffer.alloc(10));
      const stopped = stop();
      expect(stop()).toBe(stopped); // a second call gives the same wait
      await stopped;
      d.db.close();
      const dir = dirs.pop()!;
      rmSync(dir, { recursive: true });
      await new Promise((r) => setTimeout(r, 2 * FAST.intervalMs));
      expect(() => statSync(dir)).toThrow(/ENOENT/);
    }
  });

  it('waits for the thread that has the file open, not for an earlier thread that exits meanwhile', async () => {
    // A thread that ended with its last database used to settle every removal still waiting,
    // including one posted to the thread started after it: that thread could then open the
    // database after stop() had resolved, failing if it was gone, or leaving -wal/-shm files in
    // a directory being removed (CI: ENOTEMPTY from a test's cleanup).
    const lines: string[] = [];
    configureLogger({ level: 'warn', destination: { write: (line: string) => void lines.push(line) } });
    try {
      for (let i = 0; i < 20; i++) {
        const a = openDb();
        const stopA = checkpointInBackground(a.db, a.path, 'NORMAL', FAST);
        const aStopped = stopA(); // its thread ends...
        const b = openDb(); // ...while the next database starts a new one
        const stopB = checkpointInBackground(b.db, b.path, 'NORMAL', FAST);
        await stopB();
        b.db.close();
        const dir = dirs.pop()!;
        rmSync(dir, { recursive: true });
        await aStopped;
        a.db.close();
        await new Promise((r) => setTimeout(r, 4 * FAST.intervalMs));
        expect(() => statSync(dir)).toThrow(/ENOENT/);
      }
      // Give a thread still starting the time to open what it was handed, were it still to come.
      await new Promise((r) => setTimeout(r, 200));
      expect(lines).toEqual([]);
    } finally {
      configureLogger({ level: 'silent' });
    }
  });
});
