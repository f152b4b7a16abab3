// MetadataStore on SQLite (in memory) and PostgreSQL (a fresh schema): the reference-count rules written at the top of
// src/meta/metadata-store.ts, version rules, the commit guard against blobs collected during
// an upload, and paged listing.
import { createHash } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors.js';
import { configureLogger } from '../../src/log.js';
import { MetadataStore, type BlockRef, type CommitGuard, type ContentRecord } from '../../src/meta/metadata-store.js';
import { migrateToLatest } from '../../src/meta/migrate.js';
import type { Database } from '../../src/meta/schema.js';
import { openPostgres } from '../../src/meta/postgres.js';
import { openSqlite } from '../../src/meta/sqlite.js';
import { uid } from '../support/ft.js';
import { dropSchema } from '../support/postgres.js';
import { pgFromInject } from '../support/s3-client.js';

/** An upload that started on an empty gc log and wrote its own map. */
const FRESH: CommitGuard = { startSeq: 0, mapWritten: true };

const hex = (s: string) => createHash('sha256').update(s).digest('hex');

/** A block named by `name`; sizes and CRC are made up but stable. */
function block(name: string): BlockRef {
  return { hash: hex(`block:${name}`), size: 1000 + name.length, storedSize: 500 + name.length, crc32: name.length * 7919 };
}

/** A content made of the named blocks, in order (names may repeat). */
function content(name: string, blockNames: string[]): ContentRecord {
  const blocks = blockNames.map(block);
  return {
    hash: hex(`content:${name}`),
    logicalSize: blocks.reduce((s, b) => s + b.size, 0),
    storedSize: blocks.reduce((s, b) => s + b.storedSize, 0),
    crc32: name.length,
    blocks,
  };
}

configureLogger({ level: 'silent' }); // migrateToLatest logs every migration at info

const ENGINES = [
  { name: 'SQLite :memory:', open: async () => ({ db: openSqlite(':memory:'), drop: async () => {} }) },
  {
    name: 'PostgreSQL',
    open: async () => {
      const info = pgFromInject();
      const schema = `m_${uid()}${uid()}`;
      const db = await openPostgres({ ...info, maxConnections: 4, schema });
      return { db, drop: () => dropSchema(info, schema) };
    },
  },
];

describe.each(ENGINES)('MetadataStore ($name)', ({ open }) => {
  let db: Kysely<Database>;
  let meta: MetadataStore;
  let drop: () => Promise<void>;

  beforeEach(async () => {
    ({ db, drop } = await open());
    await migrateToLatest(db);
    meta = new MetadataStore(db);
  });
  afterEach(async () => {
    await meta.close();
    await drop();
  });

  const contentRef = async (c: ContentRecord) =>
    (await db.selectFrom('contents').select('ref_count').where('hash', '=', c.hash).executeTakeFirst())?.ref_count;
  const blockRef = async (name: string) =>
    (await db.selectFrom('blocks').select('ref_count').where('hash', '=', block(name).hash).executeTakeFirst())?.ref_count;
  const rows = async (table: keyof Database) => {
    const r = await sql<{ n: number }>`select count(*) as n from ${sql.table(table)}`.execute(db);
    return Number(r.rows[0].n);
  };
  /** Everything in the database, for "nothing changed" assertions. */
  const snapshot = async () => ({
    files: await db.selectFrom('files').selectAll().orderBy('path').execute(),
    contents: await db.selectFrom('contents').selectAll().orderBy('hash').execute(),
    contentBlocks: await db.selectFrom('content_blocks').selectAll().orderBy('content_hash').orderBy('idx').execute(),
    blocks: await db.selectFrom('blocks').selectAll().orderBy('hash').execute(),
  });

  describe('commitPut', () => {
    it('creates the file, the content and its blocks with one reference each', async () => {
      const c = content('one', ['a', 'b', 'c']);
      expect(await meta.commitPut('dir/f', 100, c, FRESH)).toEqual({ applied: true, version: 100 });
      expect(await contentRef(c)).toBe(1);
      for (const b of ['a', 'b', 'c']) expect(await blockRef(b), b).toBe(1);
      expect(await meta.getFile('dir/f')).toEqual({
        path: 'dir/f',
        version: 100,
        contentHash: c.hash,
        logicalSize: c.logicalSize,
        storedSize: c.storedSize,
        crc32: c.crc32,
        blockCount: 3,
      });
      expect(await meta.getContentBlocks(c.hash)).toEqual(c.blocks);
      expect(await meta.hasContent(c.hash)).toBe(true);
      expect(await meta.getFile('dir/other')).toBeNull();
    });

    it('decrements the old content on overwrite and keeps its row at zero', async () => {
      const old = content('old', ['a', 'b']);
      const next = content('new', ['b', 'c']);
      await meta.commitPut('f', 100, old, FRESH);
      await meta.commitPut('f', 200, next, FRESH);
      expect(await contentRef(old)).toBe(0);
      expect(await contentRef(next)).toBe(1);
      // Blocks count contents rows, and the old content row is still there (for the cleaner).
      expect(await blockRef('a')).toBe(1);
      expect(await blockRef('b')).toBe(2);
      expect(await blockRef('c')).toBe(1);
      expect((await meta.getFile('f'))?.contentHash).toBe(next.hash);
      expect(await rows('files')).toBe(1);
    });

    it('keeps ref 1 when the same content is put twice to one path', async () => {
      const c = content('same', ['a', 'b']);
      await meta.commitPut('f', 100, c, FRESH);
      expect(await meta.commitPut('f', 100, c, FRESH)).toEqual({ applied: true, version: 100 }); // equal version
      expect(await meta.commitPut('f', 150, c, FRESH)).toEqual({ applied: true, version: 150 });
      expect(await contentRef(c)).toBe(1);
      expect(await blockRef('a')).toBe(1);
      expect(await blockRef('b')).toBe(1);
      expect((await meta.getFile('f'))?.version).toBe(150);
    });

    it('counts one content reference per path and one block reference per content', async () => {
      const c = content('shared', ['a', 'b']);
      await meta.commitPut('p1', 100, c, FRESH);
      await meta.commitPut('p2', 100, c, FRESH);
      await meta.commitPut('p3', 100, c, FRESH);
      expect(await contentRef(c)).toBe(3);
      expect(await blockRef('a')).toBe(1);
      expect(await blockRef('b')).toBe(1);
      const other = content('other', ['b', 'z']);
      await meta.commitPut('p4', 100, other, FRESH);
      expect(await blockRef('b')).toBe(2);
      expect(await blockRef('z')).toBe(1);
    });

    it('counts a block once per content even when it repeats inside it, keeping the order', async () => {
      const c = content('repeats', ['a', 'b', 'a', 'a', 'c', 'b']);
      await meta.commitPut('f', 100, c, FRESH);
      expect(await blockRef('a')).toBe(1);
      expect(await blockRef('b')).toBe(1);
      expect(await blockRef('c')).toBe(1);
      expect(await rows('blocks')).toBe(3);
      expect(await rows('content_blocks')).toBe(6);
      expect((await meta.getContentBlocks(c.hash)).map((b) => b.hash)).toEqual(c.blocks.map((b) => b.hash));
      expect((await meta.getFile('f'))?.blockCount).toBe(6);
    });

    it('ignores an older version and answers the one that stands', async () => {
      const first = content('first', ['a']);
      const older = content('older', ['q']);
      await meta.commitPut('f', 200, first, FRESH);
      const before = await snapshot();
      expect(await meta.commitPut('f', 199, older, FRESH)).toEqual({ applied: false, version: 200 });
      expect(await snapshot()).toEqual(before);
    });

    it('revives a content whose count dropped to zero without touching its blocks', async () => {
      const c = content('revive', ['a', 'b']);
      await meta.commitPut('f', 100, c, FRESH);
      expect(await meta.commitDelete('f', 100)).toBe('deleted');
      expect(await contentRef(c)).toBe(0);
      await meta.commitPut('g', 300, c, FRESH);
      expect(await contentRef(c)).toBe(1);
      expect(await blockRef('a')).toBe(1);
      expect(await rows('content_blocks')).toBe(2);
    });

    it('handles contents with more blocks than one INSERT batch', async () => {
      const names = Array.from({ length: 1203 }, (_, i) => `big-${i % 1100}`);
      const c = content('big', names);
      await meta.commitPut('big', 100, c, FRESH);
      expect(await rows('content_blocks')).toBe(1203);
      expect(await rows('blocks')).toBe(1100);
      expect((await meta.getContentBlocks(c.hash)).length).toBe(1203);
      expect((await meta.findBlocks(names.map((x) => block(x).hash))).size).toBe(1100);
    });

    describe('guard: nothing a new content needs may have been collected during the upload', () => {
      /** Records a cleaner deletion of `key` in the gc log; returns its seq. */
      const collected = async (key: string, pending = 0) => {
        const r = await db.insertInto('gc_log').values({ key, pending, created_at: Date.now() }).returning('seq').executeTakeFirstOrThrow();
        return Number(r.seq);
      };

      const expectUnavailable = async (p: Promise<unknown>, message: RegExp) => {
        const err = await p.then(
          () => null,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(AppError);
        expect((err as AppError).code).toBe('UNAVAILABLE');
        expect((err as AppError).status).toBe(503);
        expect((err as AppError).message).toMatch(message);
      };

      let before: Awaited<ReturnType<typeof snapshot>>;
      const c = content('needs-gone', ['a', 'gone', 'n']);
      beforeEach(async () => {
        await meta.commitPut('f', 100, content('existing', ['a', 'b']), FRESH);
        before = await snapshot();
      });

      it('fails when a reused block was deleted after the upload read the watermark, and changes nothing', async () => {
        const startSeq = await meta.gcWatermark();
        expect(startSeq).toBe(0);
        const seq = await collected(`blocks/${block('gone').hash}`);
        expect(await meta.gcWatermark()).toBe(seq);
        await expectUnavailable(meta.commitPut('f', 200, c, { startSeq, mapWritten: true }), /garbage-collected during the upload/);
        await expectUnavailable(meta.commitPut('new', 100, c, { startSeq, mapWritten: true }), /garbage-collected/);
        expect(await snapshot()).toEqual(before);
        expect(await meta.hasContent(c.hash)).toBe(false);
        // An upload that started after that deletion (and so rewrote the block) may commit.
        expect(await meta.commitPut('new', 100, c, { startSeq: seq, mapWritten: true })).toEqual({ applied: true, version: 100 });
      });

      it('reads the watermark and whether the content exists in one call, as gcWatermark and hasContent read them', async () => {
        const existing = content('existing', ['a', 'b']).hash;
        expect(await meta.watermarkAndContent(existing)).toEqual({ startSeq: 0, contentExists: true });
        const seq = await collected(`blocks/${block('gone').hash}`);
        expect(await meta.watermarkAndContent(c.hash)).toEqual({ startSeq: seq, contentExists: false });
        await db.updateTable('gc_state').set({ pruned_through: seq + 5 }).where('id', '=', 1).execute();
        expect(await meta.watermarkAndContent(existing)).toEqual({ startSeq: seq + 5, contentExists: true });
        expect(await meta.gcWatermark()).toBe(seq + 5);
      });

      it('fails while a deletion of a needed key is pending, whatever the watermark', async () => {
        const seq = await collected(`maps/${c.hash}`, 1);
        await expectUnavailable(meta.commitPut('f', 200, c, { startSeq: seq, mapWritten: true }), /garbage-collected/);
        expect(await snapshot()).toEqual(before);
      });

      it('fails when the log was pruned past the watermark', async () => {
        await db.updateTable('gc_state').set({ pruned_through: 7 }).where('id', '=', 1).execute();
        expect(await meta.gcWatermark()).toBe(7);
        await expectUnavailable(meta.commitPut('f', 200, c, { startSeq: 3, mapWritten: true }), /retention/);
        expect((await snapshot()).files).toEqual(before.files);
      });

      it('fails for a new content whose map the upload did not write (it found the content, which then vanished)', async () => {
        await expectUnavailable(meta.commitPut('f', 200, c, { startSeq: 0, mapWritten: false }), /content map was collected/);
        expect(await snapshot()).toEqual(before);
      });

      it('ignores deletions of keys the content does not use, and an existing content needs no proof', async () => {
        await collected(`blocks/${block('unrelated').hash}`);
        expect(await meta.commitPut('g', 100, c, FRESH)).toEqual({ applied: true, version: 100 });
        await collected(`blocks/${block('gone').hash}`);
        // c is now present: a second path only takes a reference.
        expect(await meta.commitPut('h', 100, c, { startSeq: 0, mapWritten: false })).toEqual({ applied: true, version: 100 });
        expect(await contentRef(c)).toBe(2);
      });
    });
  });

  describe('commitDelete', () => {
    it('answers absent, ignored or deleted and decrements the content only when deleted', async () => {
      const c = content('del', ['a']);
      expect(await meta.commitDelete('f', 100)).toBe('absent');
      await meta.commitPut('f', 100, c, FRESH);
      await meta.commitPut('g', 100, c, FRESH);
      expect(await meta.commitDelete('f', 99)).toBe('ignored');
      expect(await contentRef(c)).toBe(2);
      expect(await meta.commitDelete('f', 100)).toBe('deleted'); // equal version deletes
      expect(await contentRef(c)).toBe(1);
      expect(await meta.getFile('f')).toBeNull();
      expect(await meta.commitDelete('f', 500)).toBe('absent');
      expect(await meta.commitDelete('g', 101)).toBe('deleted');
      expect(await contentRef(c)).toBe(0);
      // Rows stay for the cleaner; block counts follow contents rows, not files.
      expect(await rows('contents')).toBe(1);
      expect(await blockRef('a')).toBe(1);
      expect(await rows('files')).toBe(0);
    });
  });

  describe('listFiles', () => {
    const collect = async (prefix: string, max: number) => {
      const out: string[] = [];
      for await (const f of meta.listFiles(prefix, max)) out.push(f.path);
      return out;
    };
    const byteOrder = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

    it('pages through more than 1000 rows with a prefix and a version cut-off, in byte order', async () => {
      const c = content('listed', ['a']);
      const expected: string[] = [];
      // 3300 files under dir/, every third one too new for the cut-off: three pages are read.
      for (let i = 0; i < 3300; i++) {
        const path = `dir/f${String(i).padStart(5, '0')}`;
        const version = i % 3 === 0 ? 2000 : 1000 + (i % 999);
        await meta.commitPut(path, version, c, FRESH);
        if (version <= 1999) expected.push(path);
      }
      // Unicode names whose UTF-16 order differs from UTF-8 byte order (U+FF21 vs U+1F600).
      const unicode = ['dir/Ａ', 'dir/😀', 'dir/ż', 'dir/z', 'dir/\u00e9t\u00e9', 'dir/\uffff', 'dir/sub/deeper/x'];
      for (const p of unicode) await meta.commitPut(p, 1500, c, FRESH);
      expected.push(...unicode);
      // Neighbours that a plain string prefix would catch or that sort next to 'dir/'.
      for (const p of ['dir', 'dir2/x', 'dir.x', 'dir-x/y', 'di/r', 'dis/x', 'dir0']) await meta.commitPut(p, 1500, c, FRESH);

      const got = await collect('dir/', 1999);
      expect(got.length).toBe(expected.length);
      expect(got.length).toBeGreaterThan(2 * 1000);
      expect(got).toEqual([...expected].sort(byteOrder));
      expect(got.indexOf('dir/Ａ')).toBeLessThan(got.indexOf('dir/😀'));
      expect(new Set(got).size).toBe(got.length);

      // The cut-off is inclusive.
      expect((await collect('dir/', 2000)).length).toBe(3300 + unicode.length);
      // No prefix: everything up to the cut-off, in byte order.
      const all = await collect('', 1999);
      expect(all).toEqual([...all].sort(byteOrder));
      expect(all).toEqual(expect.arrayContaining(['dir', 'dir2/x', 'dir.x', 'dir0', 'di/r']));
      expect(all.length).toBe(expected.length + 7);
    });

    it('yields the record of each file', async () => {
      const c = content('rec', ['a', 'b']);
      await meta.commitPut('x/y', 1234, c, FRESH);
      const out = [];
      for await (const f of meta.listFiles('x/', 5000)) out.push(f);
      expect(out).toEqual([{ path: 'x/y', version: 1234, contentHash: c.hash, logicalSize: c.logicalSize }]);
      expect(await collect('x/', 1233)).toEqual([]);
      expect(await collect('nothing/', 5000)).toEqual([]);
    });
  });
});
