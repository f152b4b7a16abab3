// The PostgreSQL reads as named prepared statements (src/meta/pg-reads.ts) answer exactly what
// the Kysely queries they stand for answer, on the same database: the same store opened through
// openPostgres (prepared statements) and through a plain Kysely over its own pool (Kysely).
import { Kysely, PostgresDialect } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configureLogger } from '../../src/log.js';
import { MetadataStore, type BlockRef } from '../../src/meta/metadata-store.js';
import { migrateToLatest } from '../../src/meta/migrate.js';
import { pgPool } from '../../src/meta/pg-reads.js';
import { createPgPool, openPostgres } from '../../src/meta/postgres.js';
import type { Database } from '../../src/meta/schema.js';
import { uid } from '../support/ft.js';
import { contentRecord as content, hex } from '../support/records.js';
import { dropSchema } from '../support/postgres.js';
import { pgFromInject } from '../support/s3-client.js';

configureLogger({ level: 'silent' });

const FRESH = { startSeq: 0, mapWritten: true };

describe('PostgreSQL reads as prepared statements', () => {
  const info = pgFromInject();
  const schema = `r_${uid()}${uid()}`;
  let prepared: MetadataStore;
  let viaKysely: MetadataStore;

  beforeAll(async () => {
    const db = await openPostgres({ ...info, maxConnections: 2, schema });
    await migrateToLatest(db);
    prepared = new MetadataStore(db);
    const plain = new Kysely<Database>({ dialect: new PostgresDialect({ pool: createPgPool({ ...info, maxConnections: 2, schema }) }) });
    viaKysely = new MetadataStore(plain);
    expect(pgPool(db)).toBeDefined();
    expect(pgPool(plain)).toBeUndefined();

    const inExtent = (i: number): BlockRef => ({ hash: hex(`e${i}`), size: 1000 + i, storedSize: 500 + i, crc32: i, extent: 'ab'.repeat(16), offset: 600 * i });
    const own = (i: number): BlockRef => ({ hash: hex(`o${i}`), size: 2000 + i, storedSize: 900 + i, crc32: 100 + i });
    await prepared.commitPut('dir/many', 100, content('many', [inExtent(0), own(1), inExtent(2), inExtent(0)]), FRESH);
    await prepared.commitPut('dir/one', 200, content('one', [own(5)]), FRESH);
    await prepared.commitPut('dir/empty', 300, content('empty', []), FRESH);
    await prepared.commitPut('dir/member', 400, { hash: hex('member'), logicalSize: 10, storedSize: 30, crc32: 9, blocks: [] }, FRESH);
    await prepared.db.insertInto('gc_log').values({ key: 'blocks/x', pending: 0, created_at: 1 }).execute();
  });
  afterAll(async () => {
    await prepared?.close();
    await viaKysely?.close();
    await dropSchema(info, schema);
  });

  it('answers GET and HEAD lookups as the Kysely queries do, twice (the second from the prepared plan)', async () => {
    for (let round = 0; round < 2; round++) {
      for (const path of ['dir/many', 'dir/one', 'dir/empty', 'dir/member', 'dir/absent']) {
        const got = await prepared.getFileForRead(path);
        expect(got, path).toEqual(await viaKysely.getFileForRead(path));
        expect(await prepared.getFile(path), path).toEqual(await viaKysely.getFile(path));
      }
    }
    const many = await prepared.getFileForRead('dir/many');
    expect(many?.blocks.map((b) => b.extent ?? null)).toEqual(['ab'.repeat(16), null, 'ab'.repeat(16), 'ab'.repeat(16)]);
    expect(many?.blocks.map((b) => b.offset ?? null)).toEqual([0, null, 1200, 0]);
  });

  it("answers an upload's checks as the Kysely queries do", async () => {
    for (const hash of [hex('many'), hex('member'), hex('absent')]) expect(await prepared.hasContent(hash)).toBe(await viaKysely.hasContent(hash));
    for (const hash of [hex('e2'), hex('o5'), hex('absent')]) expect(await prepared.findBlocks([hash])).toEqual(await viaKysely.findBlocks([hash]));
    const watermark = await prepared.gcWatermark();
    expect(watermark).toBeGreaterThan(0);
    expect(watermark).toBe(await viaKysely.gcWatermark());
    for (const hash of [hex('many'), hex('member'), hex('absent')]) {
      const both = await prepared.watermarkAndContent(hash);
      expect(both).toEqual(await viaKysely.watermarkAndContent(hash));
      expect(both).toEqual({ startSeq: watermark, contentExists: await viaKysely.hasContent(hash) });
    }
  });
});
