// The SQLite hot path's cache of GET and HEAD lookups (src/meta/sqlite-hot-path.ts): it must
// never answer from a state the database has left, whoever changed it: this store's own
// commits, a Kysely write on the same connection, or another connection to the same file (what
// another process, a WORKERS sibling or a CLI beside the server, is to SQLite).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import type { Kysely } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { configureLogger } from '../../src/log.js';
import { MetadataStore, type ContentRecord } from '../../src/meta/metadata-store.js';
import { migrateToLatest } from '../../src/meta/migrate.js';
import type { Database } from '../../src/meta/schema.js';
import { openSqlite } from '../../src/meta/sqlite.js';
import { metrics } from '../../src/metrics/metrics.js';

configureLogger({ level: 'silent' });

const FRESH = { startSeq: 0, mapWritten: true };
const hex = (s: string) => createHash('sha256').update(s).digest('hex');

/** A content of `n` made-up blocks, distinct per name. */
function content(name: string, n = 2): ContentRecord {
  const blocks = Array.from({ length: n }, (_, i) => ({ hash: hex(`${name}/${i}`), size: 100, storedSize: 60, crc32: i }));
  return { hash: hex(name), logicalSize: 100 * n, storedSize: 60 * n, crc32: 7, blocks };
}

async function lookups(): Promise<{ hit: number; miss: number }> {
  const values = (await metrics.fileCacheLookups.get()).values;
  const of = (result: string) => values.find((v) => v.labels.result === result)?.value ?? 0;
  return { hit: of('hit'), miss: of('miss') };
}

describe('file lookup cache (SQLite)', () => {
  let dir: string;
  let dbA: Kysely<Database>;
  let dbB: Kysely<Database>;
  let a: MetadataStore;
  let b: MetadataStore;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 's3dedup-file-cache-'));
    const file = join(dir, 'meta.sqlite');
    dbA = openSqlite(file);
    await migrateToLatest(dbA);
    dbB = openSqlite(file);
    a = new MetadataStore(dbA);
    b = new MetadataStore(dbB);
  });
  afterEach(async () => {
    await a.close();
    await b.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers a repeated lookup from memory', async () => {
    await a.commitPut('f', 100, content('one'), FRESH);
    const before = await lookups();
    const first = await a.getFileForRead('f');
    const second = await a.getFileForRead('f');
    expect(second).toEqual(first);
    expect(second?.file.contentHash).toBe(hex('one'));
    const after = await lookups();
    expect(after.miss - before.miss).toBe(1);
    expect(after.hit - before.hit).toBe(1);
  });

  it('sees its own PUT and DELETE commits of a cached path', async () => {
    await a.commitPut('f', 100, content('one'), FRESH);
    expect((await a.getFileForRead('f'))?.file.version).toBe(100);
    await a.commitPut('f', 200, content('two', 3), FRESH);
    const next = await a.getFileForRead('f');
    expect(next?.file).toMatchObject({ version: 200, contentHash: hex('two'), blockCount: 3 });
    expect(next?.blocks.map((x) => x.hash)).toEqual(content('two', 3).blocks.map((x) => x.hash));
    expect((await a.getFile('f'))?.version).toBe(200);
    expect(await a.commitDelete('f', 300)).toBe('deleted');
    expect(await a.getFileForRead('f')).toBeNull();
    expect(await a.getFile('f')).toBeNull();
  });

  it('keeps other cached paths across its own commits', async () => {
    await a.commitPut('f', 100, content('one'), FRESH);
    await a.commitPut('g', 100, content('two'), FRESH);
    await a.getFileForRead('f');
    const before = await lookups();
    await a.commitPut('g', 200, content('three'), FRESH);
    expect((await a.getFileForRead('f'))?.file.version).toBe(100);
    expect((await lookups()).hit - before.hit).toBe(1);
  });

  it('sees commits made through another connection to the same file', async () => {
    await a.commitPut('f', 100, content('one'), FRESH);
    expect((await a.getFileForRead('f'))?.file.contentHash).toBe(hex('one'));
    expect((await a.getFile('f'))?.version).toBe(100);
    await b.commitPut('f', 200, content('two'), FRESH);
    expect((await a.getFileForRead('f'))?.file).toMatchObject({ version: 200, contentHash: hex('two') });
    expect((await a.getFile('f'))?.version).toBe(200);
    await b.commitDelete('f', 300);
    expect(await a.getFileForRead('f')).toBeNull();
    expect(await a.getFile('f')).toBeNull();
  });

  it('sees a write made through Kysely on its own connection', async () => {
    await a.commitPut('f', 100, content('one'), FRESH);
    await a.getFileForRead('f');
    await dbA.updateTable('files').set({ version: 150 }).where('path', '=', 'f').execute();
    expect((await a.getFileForRead('f'))?.file.version).toBe(150);
    expect((await a.getFile('f'))?.version).toBe(150);
  });

  it('answers the lookups of one turn together, each with its own result', async () => {
    await a.commitPut('f', 100, content('one'), FRESH);
    await a.commitPut('g', 100, content('two', 4), FRESH);
    const [f, g, missing, head] = await Promise.all([a.getFileForRead('f'), a.getFileForRead('g'), a.getFileForRead('nope'), a.getFile('g')]);
    expect(f?.file.contentHash).toBe(hex('one'));
    expect(g?.blocks).toHaveLength(4);
    expect(missing).toBeNull();
    expect(head).toMatchObject({ path: 'g', blockCount: 4 });
  });

  it('hands out frozen results, so that no caller can change what the next one gets', async () => {
    await a.commitPut('f', 100, content('one'), FRESH);
    const got = await a.getFileForRead('f');
    expect(() => {
      (got!.file as { version: number }).version = 1;
    }).toThrow(TypeError);
    expect(() => got!.blocks.push(got!.blocks[0])).toThrow(TypeError);
    expect((await a.getFileForRead('f'))?.file.version).toBe(100);
  });

  it('with FILE_CACHE_SIZE 0 reads the database every time', async () => {
    const off = new MetadataStore(openSqlite(join(dir, 'meta.sqlite')), { fileCacheSize: 0 });
    try {
      await a.commitPut('f', 100, content('one'), FRESH);
      const before = await lookups();
      expect((await off.getFileForRead('f'))?.file.version).toBe(100);
      expect((await off.getFileForRead('f'))?.file.version).toBe(100);
      expect((await off.getFile('f'))?.version).toBe(100);
      expect(await lookups()).toEqual(before);
    } finally {
      await off.close();
    }
  });
});
