import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, truncateSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PACK_INDEX, PackedBlobStore } from '../../src/blobs/packed.js';
import { BlobExistsError, BlobNotFoundError, BlobStoreError } from '../../src/errors.js';
import { blobStoreContract, hashKey } from './contract.js';

const tempRoot = () => mkdtemp(join(tmpdir(), 's3dedup-packed-'));
const packFiles = (root: string) => readdirSync(join(root, 'packs')).filter((n) => n.endsWith('.pack'));

blobStoreContract('PackedBlobStore', async () => {
  const dir = await tempRoot();
  const store = await PackedBlobStore.open({ root: join(dir, 'blobs') });
  return { store, cleanup: () => rm(dir, { recursive: true, force: true }) };
});

blobStoreContract('PackedBlobStore (fsync, 64 KiB packs)', async () => {
  const dir = await tempRoot();
  // Small packs: the contract's 1 MiB object and its many keys cross several pack rotations.
  const store = await PackedBlobStore.open({ root: dir, fsync: true, packMaxBytes: 65_536 });
  return { store, cleanup: () => rm(dir, { recursive: true, force: true }) };
});

describe('PackedBlobStore', () => {
  let dir: string;
  const open: PackedBlobStore[] = [];
  const openStore = async (opts: { packMaxBytes?: number } = {}) => {
    const s = await PackedBlobStore.open({ root: dir, ...opts });
    open.push(s);
    return s;
  };

  beforeEach(async () => {
    dir = await tempRoot();
  });
  afterEach(async () => {
    for (const s of open.splice(0)) await s.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('replaces the by-pack index of an older store with the by-pack-and-offset one, and compacts with it', async () => {
    const a = await openStore();
    const blobs = Array.from({ length: 20 }, (_, i) => randomBytes(1000 + i));
    await Promise.all(blobs.map((b) => a.put(hashKey('blocks', b), b)));
    await a.close();
    // As a store made before the change: its index on pack alone.
    const db = new BetterSqlite3(join(dir, PACK_INDEX));
    db.exec('drop index objects_pack_offset; create index objects_pack on objects (pack)');
    db.close();

    const b = await openStore({ packMaxBytes: 4096 });
    const indexes = () => {
      const check = new BetterSqlite3(join(dir, PACK_INDEX), { readonly: true });
      const names = (check.prepare(`select name from sqlite_master where type = 'index' and tbl_name = 'objects' and sql is not null`).all() as Array<{ name: string }>).map((r) => r.name);
      check.close();
      return names;
    };
    expect(indexes()).toEqual(['objects_pack_offset']);
    for (const blob of blobs) expect((await b.get(hashKey('blocks', blob))).equals(blob)).toBe(true);
    // Compaction walks a pack's objects through this index: drop all but one and compact.
    for (const blob of blobs.slice(1)) await b.delete(hashKey('blocks', blob));
    await b.put(hashKey('blocks', Buffer.from('x'.repeat(5000))), Buffer.from('x'.repeat(5000))); // seals the old pack
    const report = await b.compact();
    expect(report.packsRemoved).toBeGreaterThanOrEqual(1);
    expect((await b.get(hashKey('blocks', blobs[0]))).equals(blobs[0])).toBe(true);
  });

  it('counts live bytes exactly when one batch writes, overwrites and re-overwrites keys', async () => {
    const s = await openStore();
    const a = Buffer.alloc(1000, 1);
    await s.put('blocks/a', a);
    // One turn of the event loop: these commit in one index transaction.
    await Promise.all([
      s.put('blocks/a', Buffer.alloc(300, 2)),
      s.put('blocks/b', Buffer.alloc(500, 3)),
      s.put('blocks/a', Buffer.alloc(700, 4)),
      s.put('blocks/c', Buffer.alloc(900, 5)),
    ]);
    await s.delete('blocks/c');
    expect(s.stats().live).toBe(700 + 500);
    expect((await s.get('blocks/a')).equals(Buffer.alloc(700, 4))).toBe(true);
  });

  it('keeps objects across close and reopen, in one pack file, not a file each', async () => {
    const a = await openStore();
    const blobs = Array.from({ length: 50 }, (_, i) => randomBytes(100 + i * 1000));
    await Promise.all(blobs.map((b) => a.put(hashKey('blocks', b), b)));
    await a.close();
    expect(packFiles(dir)).toHaveLength(1);
    const b = await openStore();
    for (const blob of blobs) expect((await b.get(hashKey('blocks', blob))).equals(blob)).toBe(true);
    // A reopened store appends to a pack of its own.
    await b.put('x', Buffer.from('x'));
    expect(packFiles(dir)).toHaveLength(2);
  });

  it('compaction gives back the space of deleted and overwritten objects and keeps the rest readable', async () => {
    const s = await openStore({ packMaxBytes: 200_000 });
    const blobs = Array.from({ length: 40 }, () => randomBytes(20_000));
    for (const b of blobs) await s.put(hashKey('blocks', b), b);
    const namesBefore = packFiles(dir);
    const packsBefore = namesBefore.length;
    expect(packsBefore).toBeGreaterThan(3);
    // Delete three of every four, overwrite one key.
    for (const [i, b] of blobs.entries()) if (i % 4 !== 0) await s.delete(hashKey('blocks', b));
    await s.put(hashKey('blocks', blobs[0]), Buffer.from('replaced'));
    const before = s.stats();
    const report = await s.compact();
    const after = s.stats();

    expect(report.packsRemoved).toBeGreaterThan(0);
    expect(report.bytesFreed).toBeGreaterThan(400_000);
    expect(after.bytes).toBeLessThan(before.bytes - 400_000);
    expect(after.live).toBe(before.live);
    expect(packFiles(dir).length).toBeLessThan(packsBefore);
    expect((await s.get(hashKey('blocks', blobs[0]))).toString()).toBe('replaced');

    for (const [i, b] of blobs.entries()) {
      if (i % 4 === 0 && i > 0) expect((await s.get(hashKey('blocks', b))).equals(b)).toBe(true);
      if (i % 4 !== 0) await expect(s.get(hashKey('blocks', b))).rejects.toBeInstanceOf(BlobNotFoundError);
    }
  });

  it('never gives the id of a removed pack to a new one (another process may still hold it open)', async () => {
    const a = await openStore({ packMaxBytes: 50_000 });
    for (const k of ['a1', 'a2', 'a3']) await a.put(k, randomBytes(20_000)); // packs: [a1 a2] [a3]
    await a.close();
    open.length = 0;
    const b = await openStore();
    const before = packFiles(dir);
    await b.delete('a3');
    expect((await b.compact()).packsRemoved).toBe(1);
    const [removed] = before.filter((n) => !packFiles(dir).includes(n));
    expect(removed).toBe(before.at(-1)); // the newest pack went
    await b.put('new', Buffer.from('x'));
    const added = packFiles(dir).filter((n) => !before.includes(n));
    expect(added).toHaveLength(1);
    expect(added[0] > removed).toBe(true);
  });

  it('two stores on one directory (two processes) see each other and race creates safely', async () => {
    const a = await openStore();
    const b = await openStore();
    await a.put('from/a', Buffer.from('A'));
    await b.put('from/b', Buffer.from('B'));
    expect((await b.get('from/a')).toString()).toBe('A');
    expect((await a.get('from/b')).toString()).toBe('B');
    const key = `race/${randomBytes(4).toString('hex')}`;
    const results = await Promise.allSettled([a, b, a, b].map((s, i) => s.put(key, Buffer.from(`w${i}`), { ifNoneMatch: true })));
    const won = results.filter((r) => r.status === 'fulfilled');
    expect(won).toHaveLength(1);
    for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(BlobExistsError);
    expect((await a.get(key)).toString()).toBe((await b.get(key)).toString());
  });

  it('a reader finds an object again after another process compacted its pack away', async () => {
    const reader = await openStore({ packMaxBytes: 50_000 });
    const compactor = await openStore({ packMaxBytes: 50_000 });
    const keep = randomBytes(10_000);
    await reader.put('keep', keep);
    for (let i = 0; i < 4; i++) await reader.put(`drop/${i}`, randomBytes(10_000));
    expect((await reader.get('keep')).equals(keep)).toBe(true); // the reader now holds the first pack open
    await reader.put('rotate', randomBytes(10_000)); // the first pack is full: sealed
    for (let i = 0; i < 4; i++) await reader.delete(`drop/${i}`);
    const report = await compactor.compact();
    expect(report.objectsMoved).toBeGreaterThan(0);
    expect((await reader.get('keep')).equals(keep)).toBe(true);
    expect((await compactor.get('keep')).equals(keep)).toBe(true);
  });

  it('seals the pack of a process that died, so compaction can reclaim it', async () => {
    const s = await openStore();
    await s.put('k', Buffer.from('v'));
    await s.close();
    open.length = 0;
    // A pack left open by a writer that is gone (no such pid runs).
    const db = new BetterSqlite3(join(dir, PACK_INDEX));
    db.prepare('insert into packs (bytes, live, sealed, owner) values (0, 0, 0, ?)').run(4_194_304 + 17);
    db.close();
    await openStore();
    const check = new BetterSqlite3(join(dir, PACK_INDEX), { readonly: true });
    expect(check.prepare('select count(*) from packs where sealed = 0').pluck().get()).toBe(0);
    check.close();
  });

  it('reports a failing index as a store error from every call, never as a missing object', async () => {
    const s = await openStore();
    await s.put('k', Buffer.from('v'));
    await s.close(); // the index connection is gone: every lookup fails
    open.length = 0;
    await expect(s.get('k')).rejects.toBeInstanceOf(BlobStoreError);
    await expect(s.head('k')).rejects.toBeInstanceOf(BlobStoreError);
    await expect(s.delete('k')).rejects.toBeInstanceOf(BlobStoreError);
    await expect(s.put('k2', Buffer.from('v'), { ifNoneMatch: true })).rejects.toBeInstanceOf(BlobStoreError);
    await expect((async () => { for await (const _ of s.list('')) void _; })()).rejects.toBeInstanceOf(BlobStoreError);
  });

  it('reports a pack cut short as a store error, not as a missing object', async () => {
    const s = await openStore();
    await s.put('torn', randomBytes(100_000));
    await s.close();
    open.length = 0;
    const [pack] = packFiles(dir);
    truncateSync(join(dir, 'packs', pack), 50_000);
    const again = await openStore();
    const err = await again.get('torn').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BlobStoreError);
    expect(existsSync(join(dir, 'packs', pack))).toBe(true);
  });
});
