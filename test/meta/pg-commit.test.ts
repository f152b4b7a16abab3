// The upload's and the delete's commits on PostgreSQL as one call of s3dedup_commit_put or
// s3dedup_commit_delete (src/meta/pg-commit.ts, migration 0005) leave the database exactly as the
// Kysely transactions they stand for: the same commits on two schemas, one store opened through openPostgres (the function) and one through a
// plain Kysely over its own pool, give the same outcomes, the same failures and the same rows.
import { Kysely, PostgresDialect, sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configureLogger } from '../../src/log.js';
import { MetadataStore, type BlockRef, type CommitGuard, type ContentRecord, type DeleteOutcome, type PutOutcome } from '../../src/meta/metadata-store.js';
import { migrateToLatest } from '../../src/meta/migrate.js';
import { createPgPool, openPostgres } from '../../src/meta/postgres.js';
import type { Database } from '../../src/meta/schema.js';
import { blockKey } from '../../src/store/keys.js';
import { uid } from '../support/ft.js';
import { contentRecord, hex } from '../support/records.js';
import { dropSchema } from '../support/postgres.js';
import { pgFromInject } from '../support/s3-client.js';

configureLogger({ level: 'silent' }); // migrateToLatest logs every migration at info

const content = (name: string, blocks: BlockRef[]) => contentRecord(name, blocks, 4_294_967_295);
const FRESH: CommitGuard = { startSeq: 0, mapWritten: true };

const inExtent = (i: number): BlockRef => ({ hash: hex(`e${i}`), size: 1000 + i, storedSize: 500 + i, crc32: 4_000_000_000 + i, extent: 'ab'.repeat(16), offset: 600 * i });
const own = (i: number): BlockRef => ({ hash: hex(`o${i}`), size: 2000 + i, storedSize: 900 + i, crc32: i });

type Outcome = PutOutcome | DeleteOutcome | { failed: string; status: number };

async function outcome(p: Promise<PutOutcome | DeleteOutcome>): Promise<Outcome> {
  try {
    return await p;
  } catch (err) {
    return { failed: (err as Error).message, status: (err as { status?: number }).status ?? 0 };
  }
}

/** Every row of the tables a commit writes, without the wall-clock updated_at. */
async function dump(db: Kysely<Database>) {
  const q = async (table: string, order: string) =>
    (await sql.raw<Record<string, unknown>>(`select * from ${table} order by ${order}`).execute(db)).rows.map(({ updated_at: _, ...r }) => r);
  return {
    files: await q('files', 'path'),
    contents: await q('contents', 'hash'),
    blocks: await q('blocks', 'hash'),
    content_blocks: await q('content_blocks', 'content_hash, idx'),
  };
}

describe('PostgreSQL commit as one function call', () => {
  const info = pgFromInject();
  const schemas = [`c_${uid()}${uid()}`, `c_${uid()}${uid()}`];
  let viaFunction: MetadataStore;
  let viaKysely: MetadataStore;

  beforeAll(async () => {
    const db = await openPostgres({ ...info, maxConnections: 2, schema: schemas[0] });
    await migrateToLatest(db);
    viaFunction = new MetadataStore(db);
    const other = await openPostgres({ ...info, maxConnections: 1, schema: schemas[1] });
    await migrateToLatest(other);
    await other.destroy();
    viaKysely = new MetadataStore(new Kysely<Database>({ dialect: new PostgresDialect({ pool: createPgPool({ ...info, maxConnections: 2, schema: schemas[1] }) }) }));
  });
  afterAll(async () => {
    await viaFunction?.close();
    await viaKysely?.close();
    for (const s of schemas) await dropSchema(info, s);
  });

  it('gives the same outcomes, failures and rows as the Kysely transaction', async () => {
    const x = content('x', [inExtent(0), own(1), inExtent(0), inExtent(2)]);
    const y = content('y', [own(1), own(3)]);
    const member: ContentRecord = { hash: hex('member'), logicalSize: 10, storedSize: 30, crc32: 9, blocks: [] };
    const collectedBlock = content('w', [own(7), own(1)]);
    const steps: Array<(m: MetadataStore) => Promise<PutOutcome | DeleteOutcome>> = [
      (m) => m.commitPut('dir/a', 100, x, FRESH),
      (m) => m.commitPut('dir/b', 100, x, { startSeq: 0, mapWritten: false }), // the content exists: no map needed
      (m) => m.commitPut('dir/a', 50, y, FRESH), // older than the standing version
      (m) => m.commitPut('dir/a', 200, y, FRESH), // replaces x, shares block o1
      (m) => m.commitPut('dir/a', 200, y, FRESH), // the same version again
      (m) => m.commitPut('dir/m', 300, member, FRESH),
      (m) => m.commitPut('dir/c', 300, content('z', [own(5)]), { startSeq: 0, mapWritten: false }), // a new content whose map was collected
      async (m) => {
        await m.db.insertInto('gc_log').values({ key: blockKey(own(7).hash), pending: 0, created_at: 1 }).execute();
        return m.commitPut('dir/w', 300, collectedBlock, FRESH);
      },
      (m) => m.commitPut('dir/w', 300, collectedBlock, { startSeq: 1_000_000, mapWritten: true }), // logged before the upload began
      async (m) => {
        await m.db.updateTable('gc_state').set({ pruned_through: 2_000_000 }).where('id', '=', 1).execute();
        return m.commitPut('dir/v', 300, content('v', [own(9)]), { startSeq: 1_000_000, mapWritten: true });
      },
      (m) => m.commitDelete('dir/none', 500), // absent
      (m) => m.commitDelete('dir/b', 50), // older than the standing version
      (m) => m.commitDelete('dir/b', 100), // the last reference to x but one
      (m) => m.commitDelete('dir/m', 400),
    ];
    const got: Outcome[][] = [[], []];
    for (const step of steps) {
      got[0].push(await outcome(step(viaFunction)));
      got[1].push(await outcome(step(viaKysely)));
    }
    expect(got[0]).toEqual(got[1]);
    const brief = (o: Outcome) => (typeof o === 'string' ? o : 'failed' in o ? o.status : o.applied);
    expect(got[0].map(brief)).toEqual([true, true, false, true, true, true, 503, 503, true, 503, 'absent', 'ignored', 'deleted', 'deleted']);
    expect(got[0][6]).toMatchObject({ failed: expect.stringContaining('the content map was collected during the upload') });
    expect(got[0][7]).toMatchObject({ failed: expect.stringContaining(`${blockKey(own(7).hash)} was garbage-collected during the upload`) });
    expect(got[0][9]).toMatchObject({ failed: expect.stringContaining('outlived the garbage-collection log retention') });

    const [a, b] = [await dump(viaFunction.db), await dump(viaKysely.db)];
    expect(a).toEqual(b);
    expect(a.files.map((f) => f.path)).toEqual(['dir/a', 'dir/w']);
    expect(a.contents.find((r) => r.hash === hex('member'))?.ref_count).toBe(0);
    expect(a.blocks.find((r) => r.hash === own(1).hash)?.ref_count).toBe(3); // x, y and w
    expect(a.blocks.find((r) => r.hash === inExtent(2).hash)).toMatchObject({ extent: 'ab'.repeat(16), extent_offset: 1200, crc32: 4_000_000_002 });
  });

  it('goes through the functions (without them the commits fail; the Kysely store does not need them)', async () => {
    const after = { startSeq: 3_000_000, mapWritten: true }; // past the first test's pruned log
    await sql`drop function s3dedup_commit_put`.execute(viaFunction.db);
    await sql`drop function s3dedup_commit_delete`.execute(viaFunction.db);
    await expect(viaFunction.commitPut('dir/q', 1, content('q', []), after)).rejects.toThrow(/s3dedup_commit_put/);
    await expect(viaFunction.commitDelete('dir/a', 1000)).rejects.toThrow(/s3dedup_commit_delete/);
    expect(await viaKysely.commitPut('dir/q', 1, content('q', []), after)).toEqual({ applied: true, version: 1 });
    expect(await viaKysely.commitDelete('dir/q', 1)).toBe('deleted');
  });
});
