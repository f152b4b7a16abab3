// fsck on every backend: a store built through the HTTP routes is clean; damage made on purpose
// (a wrong count, a lost blob, an unknown object) is found exactly; --repair fixes the counts.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FSCK_PROBLEM_KINDS, formatFsckReport, runFsck, type FsckProblemKind, type FsckReport } from '../../src/maintenance/fsck.js';
import { blockKey, mapKey } from '../../src/store/keys.js';
import { BACKENDS, makeHarness, type Harness } from '../support/harness.js';
import { del, pseudoRandom, put, sha256, uid } from '../support/ft.js';

const T0 = 1_700_000_000;
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Problem counts other than zero, as { kind: count }. */
function found(report: FsckReport): Partial<Record<FsckProblemKind, number>> {
  return Object.fromEntries(FSCK_PROBLEM_KINDS.filter((k) => report.problems[k].count > 0).map((k) => [k, report.problems[k].count]));
}

const subjects = (report: FsckReport, kind: FsckProblemKind) => report.problems[kind].examples.map((e) => e.subject);

/**
 * Files sharing content and blocks: `a` and `b` hold the same bytes (content ref 2), `c` starts
 * with a's first 300 kB (shared blocks, block ref 2), `gone` was deleted (content ref 0, kept
 * for the cleaner), `empty` has no blocks at all, `small` is one whole gzip member (no blocks).
 */
async function populate(h: Harness) {
  const dir = `fsck-${uid()}`;
  const big = pseudoRandom(700_000, 11);
  const other = Buffer.concat([big.subarray(0, 300_000), pseudoRandom(400_000, 12)]);
  for (const [name, body] of [
    ['a', big],
    ['b', big],
    ['c', other],
    ['gone', pseudoRandom(200_000, 13)],
    ['empty', Buffer.alloc(0)],
    ['small', Buffer.from(`small fsck file ${dir}\n`.repeat(100))],
  ] as const) {
    expect((await put(h.app, `${dir}/${name}`, body, T0)).status).toBe(200);
  }
  expect((await del(h.app, `${dir}/gone`, T0)).status).toBe(200);
  return { dir, big: sha256(big), other: sha256(other), small: sha256(Buffer.from(`small fsck file ${dir}\n`.repeat(100))) };
}

describe.each(BACKENDS)('fsck on $name', ({ blobs, meta }) => {
  let h: Harness;
  let hashes: { big: string; other: string; small: string };
  beforeAll(async () => {
    h = await makeHarness(blobs, { EXTENT_BYTES: '0' }, meta); // one object per block; extents: fsck-extents.test.ts
    hashes = await populate(h);
  });
  afterAll(async () => {
    await h?.close();
  });

  it('finds a store built through the routes clean', async () => {
    const report = await runFsck(h.runtime);
    expect(found(report)).toEqual({});
    expect(report.clean).toBe(true);
    expect(report.scanned.files).toBe(5);
    const small = await h.runtime.meta.db.selectFrom('contents').select('block_count').where('hash', '=', hashes.small).executeTakeFirstOrThrow();
    expect(Number(small.block_count)).toBe(0); // a whole member was checked too
    expect(report.scanned.contents).toBe(await h.count('contents'));
    expect(report.scanned.blocks).toBe(await h.count('blocks'));
    // Every block, and a map for each content of other than one block.
    const mapped = await h.runtime.meta.db.selectFrom('contents').select('hash').where('block_count', '<>', 1).execute();
    expect(report.scanned.contents - mapped.length).toBeGreaterThan(0); // `gone` is one block
    expect(report.scanned.objects).toBe(mapped.length + report.scanned.blocks);
    // The shared-prefix file really shares blocks, so block counts above 1 were checked.
    const a = new Set((await h.runtime.meta.getContentBlocks(hashes.big)).map((b) => b.hash));
    expect((await h.runtime.meta.getContentBlocks(hashes.other)).some((b) => a.has(b.hash))).toBe(true);
    expect(formatFsckReport(report)).toMatch(/fsck: clean\n$/);
  });

  it('finds exactly the damage made, repairs the counts, and a second run is clean for counts', async () => {
    const db = h.runtime.meta.db;
    const bigBlocks = await h.runtime.meta.getContentBlocks(hashes.big);
    const otherBlocks = await h.runtime.meta.getContentBlocks(hashes.other);
    const shared = bigBlocks.find((b) => otherBlocks.some((o) => o.hash === b.hash))!;
    const lost = otherBlocks[otherBlocks.length - 1];
    expect(bigBlocks.some((b) => b.hash === lost.hash)).toBe(false);
    const unknown = blockKey(randomBytes(32).toString('hex'));

    await db.updateTable('contents').set({ ref_count: 7 }).where('hash', '=', hashes.big).execute();
    await db.updateTable('blocks').set({ ref_count: 0 }).where('hash', '=', shared.hash).execute();
    await h.runtime.blobs.delete(blockKey(lost.hash));
    await h.runtime.blobs.put(unknown, Buffer.from('not a block'));

    // Small pages and few HEADs in flight exercise the keyset pagination and the semaphore.
    const report = await runFsck(h.runtime, { pageSize: 2, concurrency: 3 });
    expect(found(report)).toEqual({ contentRefCount: 1, blockRefCount: 1, missingBlock: 1, unknownObject: 1 });
    expect(report.problemCount).toBe(4);
    expect(report.clean).toBe(false);
    expect(report.repair).toBeNull();
    expect(report.problems.contentRefCount.examples).toEqual([{ subject: hashes.big, detail: 'ref_count 7, named by 2 files' }]);
    expect(report.problems.blockRefCount.examples).toEqual([{ subject: shared.hash, detail: 'ref_count 0, named by 2 contents' }]);
    expect(subjects(report, 'missingBlock')).toEqual([blockKey(lost.hash)]);
    expect(subjects(report, 'unknownObject')).toEqual([unknown]);
    const text = formatFsckReport(report);
    expect(text).toContain('contentRefCount: 1');
    expect(text).toContain(`  ${blockKey(lost.hash)}: absent from the blob store`);
    expect(text).toMatch(/fsck: 4 problems found\n$/);

    const repaired = await runFsck(h.runtime, { repair: true });
    expect(found(repaired)).toEqual(found(report));
    expect(repaired.repair).toEqual({
      contents: 1,
      blocks: 1,
      changes: [
        { subject: hashes.big, detail: 'ref_count 7 -> 2' },
        { subject: shared.hash, detail: 'ref_count 0 -> 2' },
      ],
    });
    expect(formatFsckReport(repaired)).toContain('repaired: 1 content reference counts, 1 block reference counts');
    expect(formatFsckReport(repaired)).toMatch(/2 not repairable by fsck\n$/);

    const again = await runFsck(h.runtime);
    expect(found(again)).toEqual({ missingBlock: 1, unknownObject: 1 });
    const row = await db.selectFrom('contents').select('ref_count').where('hash', '=', hashes.big).executeTakeFirstOrThrow();
    expect(Number(row.ref_count)).toBe(2);

    // Put things back for the next case.
    await h.runtime.blobs.delete(unknown);
    await h.runtime.blobs.put(blockKey(lost.hash), Buffer.alloc(lost.storedSize));
    expect(found(await runFsck(h.runtime))).toEqual({});
  });

  it("reports a whole member whose size is not its row's", async () => {
    const db = h.runtime.meta.db;
    const row = await db.selectFrom('contents').select('stored_size').where('hash', '=', hashes.small).executeTakeFirstOrThrow();
    await db.updateTable('contents').set({ stored_size: Number(row.stored_size) + 1 }).where('hash', '=', hashes.small).execute();
    const report = await runFsck(h.runtime);
    expect(found(report)).toEqual({ storedSizeMismatch: 1 });
    expect(report.problems.storedSizeMismatch.examples[0]).toEqual({
      subject: hashes.small,
      detail: `stored_size ${Number(row.stored_size) + 1}, its gzip member ${mapKey(hashes.small)} has ${Number(row.stored_size)} bytes`,
    });
    await db.updateTable('contents').set({ stored_size: Number(row.stored_size) }).where('hash', '=', hashes.small).execute();
  });

  it('reports a missing map, wrong sizes, a short block list and a dangling file', async () => {
    const db = h.runtime.meta.db;
    const blocks = await h.runtime.meta.getContentBlocks(hashes.other);
    await h.runtime.blobs.delete(mapKey(hashes.other));
    await db.updateTable('contents').set({ stored_size: 1 }).where('hash', '=', hashes.other).execute();
    await db.updateTable('contents').set({ block_count: 99 }).where('hash', '=', hashes.big).execute();
    const path = `dangling-${uid()}`;
    await db.insertInto('files').values({ path, version: T0, content_hash: 'f'.repeat(64), logical_size: 1, updated_at: Date.now() }).execute();

    const report = await runFsck(h.runtime, { repair: true });
    expect(found(report)).toEqual({ missingMap: 1, storedSizeMismatch: 1, blockListMismatch: 1, danglingFile: 1 });
    expect(subjects(report, 'missingMap')).toEqual([mapKey(hashes.other)]);
    expect(report.problems.storedSizeMismatch.examples[0].detail).toBe(
      `stored_size 1, its blocks store ${blocks.reduce((s, b) => s + b.storedSize, 0)} bytes`,
    );
    expect(subjects(report, 'blockListMismatch')).toEqual([hashes.big]);
    expect(subjects(report, 'danglingFile')).toEqual([path]);
    // Nothing here is a count, so --repair changed nothing.
    expect(report.repair).toBeNull();
  });
});

describe('s3dedup fsck (CLI)', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await makeHarness('local');
    await populate(h);
  });
  afterAll(async () => {
    await h?.close();
  });

  function fsck(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'fsck', ...args], {
        cwd: ROOT,
        env: { ...process.env, ...h.env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      child.once('error', reject);
      child.once('exit', (code) => resolve({ code, stdout, stderr }));
    });
  }

  it('exits 0 on a clean store and 1 after damage; --repair fixes the counts', async () => {
    const clean = await fsck('--env');
    expect(clean.stderr).toContain('fsck: checking blocks');
    expect(clean.stdout).toMatch(/fsck: clean\n$/);
    expect(clean.code).toBe(0);

    await h.runtime.meta.db.updateTable('contents').set({ ref_count: 3 }).where('ref_count', '=', 0).execute();
    const damaged = await fsck();
    expect(damaged.stdout).toContain('contentRefCount: 1');
    expect(damaged.code).toBe(1);

    const repair = await fsck('--repair');
    expect(repair.stdout).toContain('ref_count 3 -> 0');
    expect(repair.stdout).toMatch(/all repaired\n$/);
    expect(repair.code).toBe(1);

    const after = await fsck();
    expect(after.code).toBe(0);
  });
});
