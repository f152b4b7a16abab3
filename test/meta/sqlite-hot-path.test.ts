// The SQLite hot path shares its connection with Kysely: a call made while a Kysely transaction
// is open (the cleaner's, between two of its statements) must wait for it to end, never run
// inside it. The rest of its behaviour is covered by metadata-store.test.ts, which runs the same
// assertions on SQLite (hot path) and PostgreSQL (Kysely).
import { createHash } from 'node:crypto';
import type { Kysely } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { configureLogger } from '../../src/log.js';
import { MetadataStore, type ContentRecord } from '../../src/meta/metadata-store.js';
import { migrateToLatest } from '../../src/meta/migrate.js';
import type { Database } from '../../src/meta/schema.js';
import { openSqlite, rawSqlite } from '../../src/meta/sqlite.js';

configureLogger({ level: 'silent' });

const hex = (s: string) => createHash('sha256').update(s).digest('hex');
const block = { hash: hex('b'), size: 10, storedSize: 7, crc32: 42 };
const content: ContentRecord = { hash: block.hash, logicalSize: 10, storedSize: 7, crc32: 42, blocks: [block] };

/** A promise and the function that resolves it. */
function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void;
  const wait = new Promise<void>((r) => (open = r));
  return { wait, open };
}

describe('SqliteHotPath beside Kysely transactions', () => {
  let db: Kysely<Database>;
  let meta: MetadataStore;

  beforeEach(async () => {
    db = openSqlite(':memory:');
    await migrateToLatest(db);
    meta = new MetadataStore(db);
    await meta.commitPut('a', 100, content, { startSeq: 0, mapWritten: true });
  });
  afterEach(async () => {
    await meta.close();
  });

  it('is opened for SQLite only through openSqlite', () => {
    expect(rawSqlite(db)).toBeDefined();
  });

  it('a read waits for an open Kysely transaction and sees its outcome, not its uncommitted rows', async () => {
    const g = gate();
    const tx = db.transaction().execute(async (t) => {
      await t.deleteFrom('files').where('path', '=', 'a').execute();
      await g.wait; // the transaction is open with an uncommitted delete
      throw new Error('roll back');
    });
    await new Promise((r) => setImmediate(r));
    expect(rawSqlite(db)!.inTransaction).toBe(true);
    let read: unknown = 'pending';
    const reading = meta.getFileForRead('a').then((r) => (read = r));
    await new Promise((r) => setImmediate(r));
    expect(read).toBe('pending'); // did not run inside the open transaction
    g.open();
    await expect(tx).rejects.toThrow('roll back');
    await reading;
    expect((read as { file: { version: number } }).file.version).toBe(100); // the delete was rolled back
  });

  it('a commit made while a Kysely transaction is open runs after it, in its own transaction', async () => {
    const g = gate();
    const tx = db.transaction().execute(async (t) => {
      await t.updateTable('files').set({ version: 150 }).where('path', '=', 'a').execute();
      await g.wait;
      throw new Error('roll back');
    });
    await new Promise((r) => setImmediate(r));
    // Run inside the open transaction, it would see version 150, or be rolled back with it.
    const commit = meta.commitPut('a', 120, content, { startSeq: 0, mapWritten: true });
    g.open();
    await expect(tx).rejects.toThrow('roll back');
    await expect(commit).resolves.toEqual({ applied: true, version: 120 });
    expect((await meta.getFileForRead('a'))?.file.version).toBe(120);
    await expect(meta.commitDelete('a', 200)).resolves.toBe('deleted');
    expect(await meta.getFileForRead('a')).toBeNull();
  });
});

describe('SqliteHotPath commits', () => {
  it('retries a commit without blocking the event loop, and commits once the lock is free', async () => {
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const BetterSqlite3 = (await import('better-sqlite3')).default;
    const dir = mkdtempSync(join(tmpdir(), 'hot-busy-'));
    const db = openSqlite(join(dir, 'm.sqlite'));
    await migrateToLatest(db);
    const meta = new MetadataStore(db);
    // A second connection stands in for another server process.
    const other = new BetterSqlite3(join(dir, 'm.sqlite'));
    try {
      other.exec('begin immediate');
      let ticks = 0;
      const ticker = setInterval(() => ticks++, 1);
      const started = Date.now();
      const commit = meta.commitPut('x', 1, content, { startSeq: 0, mapWritten: true });
      await new Promise((r) => setTimeout(r, 50));
      expect(ticks).toBeGreaterThan(10); // the event loop kept turning while the commit waited
      expect(await meta.getFileForRead('x')).toBeNull();
      other.exec('commit');
      await expect(commit).resolves.toEqual({ applied: true, version: 1 });
      clearInterval(ticker);
      expect(Date.now() - started).toBeLessThan(2_000);
      expect((await meta.getFileForRead('x'))?.file.version).toBe(1);
      // busy_timeout is back for everything else on the connection.
      expect(rawSqlite(db)!.pragma('busy_timeout', { simple: true })).toBe(5000);
    } finally {
      other.close();
      await meta.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('commits concurrent PUTs in one transaction; one that fails is undone alone', async () => {
    const db = openSqlite(':memory:');
    await migrateToLatest(db);
    const meta = new MetadataStore(db);
    const raw = rawSqlite(db)!;
    const fresh = (name: string): ContentRecord => {
      const b = { hash: hex(name), size: 10, storedSize: 7, crc32: 1 };
      return { hash: b.hash, logicalSize: 10, storedSize: 7, crc32: 1, blocks: [b] };
    };
    const before = raw.prepare('select count(*) from contents').pluck().get() as number;
    const commits = [
      meta.commitPut('g/1', 1, fresh('g1'), { startSeq: 0, mapWritten: true }),
      // A new content whose map the upload did not write: the guard refuses it (503, retry).
      meta.commitPut('g/2', 1, fresh('g2'), { startSeq: 0, mapWritten: false }),
      meta.commitPut('g/3', 1, fresh('g3'), { startSeq: 0, mapWritten: true }),
    ];
    const results = await Promise.allSettled(commits);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason).toMatchObject({ status: 503 });
    expect((await meta.getFileForRead('g/1'))?.file.contentHash).toBe(hex('g1'));
    expect(await meta.getFileForRead('g/2')).toBeNull();
    expect((await meta.getFileForRead('g/3'))?.file.contentHash).toBe(hex('g3'));
    // The refused commit left no row behind: two contents more, not three.
    expect(raw.prepare('select count(*) from contents').pluck().get()).toBe(before + 2);
    expect(raw.prepare('select count(*) from blocks where hash = ?').pluck().get(hex('g2'))).toBe(0);
    await meta.close();
  });

  it('a batch of PUT commits to the database is one transaction (one WAL commit)', async () => {
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = mkdtempSync(join(tmpdir(), 'hot-batch-'));
    const fileDb = openSqlite(join(dir, 'm.sqlite'));
    await migrateToLatest(fileDb);
    const fileMeta = new MetadataStore(fileDb);
    try {
      const raw = rawSqlite(fileDb)!;
      // data_version of a second connection moves once per transaction another connection commits.
      const BetterSqlite3 = (await import('better-sqlite3')).default;
      const watcher = new BetterSqlite3(join(dir, 'm.sqlite'), { readonly: true });
      const version = () => watcher.pragma('data_version', { simple: true }) as number;
      const v0 = version();
      const puts = Array.from({ length: 8 }, (_, i) => {
        const b = { hash: hex(`batch${i}`), size: 10, storedSize: 7, crc32: 1 };
        return fileMeta.commitPut(`b/${i}`, 1, { hash: b.hash, logicalSize: 10, storedSize: 7, crc32: 1, blocks: [b] }, { startSeq: 0, mapWritten: true });
      });
      await Promise.all(puts);
      expect(version()).toBe(v0 + 1);
      expect(raw.prepare('select count(*) from files').pluck().get()).toBe(8);
      watcher.close();
    } finally {
      await fileMeta.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
