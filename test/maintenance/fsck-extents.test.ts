// fsck on a store whose blocks live in extents (EXTENT_BYTES > 0), on every backend: a store
// built through the routes is clean, and stays clean after the cleaner leaves a partly dead
// extent; a lost extent gives one missingBlock per block in it, a truncated one a
// blockSizeMismatch per block that ends past its end; objects under extents/ that no row
// names are unknownObject. One object per block is test/maintenance/fsck.test.ts.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FSCK_PROBLEM_KINDS, formatFsckReport, runFsck, type FsckProblemKind, type FsckReport } from '../../src/maintenance/fsck.js';
import { blockKey, extentKey } from '../../src/store/keys.js';
import { BACKENDS, makeHarness, type Harness } from '../support/harness.js';
import { listKeys } from '../support/store-io.js';
import { checkConsistency, CONSISTENT } from '../support/recount.js';
import { del, getContent, pseudoRandom, put, sha256, uid } from '../support/ft.js';

const T0 = 1_700_000_000;
const ENV = {
  CHUNK_MIN_SIZE: '4096',
  CHUNK_AVG_SIZE: '16384',
  CHUNK_MAX_SIZE: '65536',
  EXTENT_BYTES: '131072',
  CLEANER_GRACE_SECONDS: '0',
};

/** Problem counts other than zero, as { kind: count }. */
function found(report: FsckReport): Partial<Record<FsckProblemKind, number>> {
  return Object.fromEntries(FSCK_PROBLEM_KINDS.filter((k) => report.problems[k].count > 0).map((k) => [k, report.problems[k].count]));
}

const subjects = (report: FsckReport, kind: FsckProblemKind) => report.problems[kind].examples.map((e) => e.subject).sort();

describe.each(BACKENDS)('fsck with extents on $name', ({ blobs, meta }) => {
  let h: Harness;
  let dir: string;
  const big = pseudoRandom(700_000, 21);
  // Starts with big's first 300 kB: its first blocks are big's, kept in big's extents.
  const other = Buffer.concat([big.subarray(0, 300_000), pseudoRandom(400_000, 22)]);

  beforeAll(async () => {
    h = await makeHarness(blobs, ENV, meta);
    dir = `fsck-ext-${uid()}`;
    for (const [name, body] of [
      ['big', big],
      ['other', other],
      ['gone', pseudoRandom(250_000, 23)],
    ] as const) {
      expect((await put(h.app, `${dir}/${name}`, body, T0)).status).toBe(200);
    }
    expect((await del(h.app, `${dir}/gone`, T0)).status).toBe(200); // content ref 0, kept for the cleaner
  });
  afterAll(async () => {
    await h?.close();
  });

  const extentRows = () => h.runtime.meta.db.selectFrom('blocks').select(['hash', 'extent', 'extent_offset', 'stored_size']).execute();

  it('finds a store built through the routes clean; every block is checked inside its extent', async () => {
    const rows = await extentRows();
    for (const r of rows) expect(r.extent, r.hash).not.toBeNull();
    expect(await listKeys(h.runtime.blobs, 'blocks/')).toEqual([]);
    const extents = new Set(rows.map((r) => r.extent!));
    expect(extents.size).toBeGreaterThan(3);
    // other really reuses blocks kept in big's extents
    const bigBlocks = await h.runtime.meta.getContentBlocks(sha256(big));
    const otherBlocks = await h.runtime.meta.getContentBlocks(sha256(other));
    expect(otherBlocks[0].hash).toBe(bigBlocks[0].hash);
    expect(otherBlocks[0].extent).toBe(bigBlocks[0].extent);

    const report = await runFsck(h.runtime);
    expect(found(report)).toEqual({});
    expect(report.clean).toBe(true);
    expect(report.scanned.files).toBe(2);
    expect(report.scanned.blocks).toBe(rows.length);
    // The objects listed: a map per content of several blocks and the extents, no block objects.
    expect(report.scanned.objects).toBe((await h.count('contents')) + extents.size);
    expect(formatFsckReport(report)).toMatch(/fsck: clean\n$/);
  });

  it('a lost extent is a missingBlock for exactly the blocks in it; putting it back is clean', async () => {
    const rows = await extentRows();
    // One of big's extents that other's blocks name too: the loss hits both contents.
    const otherBlocks = await h.runtime.meta.getContentBlocks(sha256(other));
    const lost = otherBlocks[0].extent!;
    const inIt = rows.filter((r) => r.extent === lost);
    expect(inIt.length).toBeGreaterThan(1);
    const saved = await h.runtime.blobs.get(extentKey(lost));
    await h.runtime.blobs.delete(extentKey(lost));

    const report = await runFsck(h.runtime, { maxExamples: 1000, pageSize: 7, concurrency: 2 });
    expect(found(report)).toEqual({ missingBlock: inIt.length });
    expect(subjects(report, 'missingBlock')).toEqual(inIt.map((r) => blockKey(r.hash)).sort());
    for (const e of report.problems.missingBlock.examples) expect(e.detail).toContain(extentKey(lost));
    expect(report.clean).toBe(false);
    expect((await checkConsistency(h.runtime)).missingBlobs.length).toBe(inIt.length);

    await h.runtime.blobs.put(extentKey(lost), saved);
    expect(found(await runFsck(h.runtime))).toEqual({});
  });

  it('a truncated extent is a blockSizeMismatch for exactly the blocks that end past it', async () => {
    const rows = await extentRows();
    const id = rows[0].extent!;
    const inIt = rows.filter((r) => r.extent === id).sort((a, b) => Number(a.extent_offset) - Number(b.extent_offset));
    const last = inIt[inIt.length - 1];
    const saved = await h.runtime.blobs.get(extentKey(id));
    // Cut the trailer and the last byte of the last segment: only the last block ends outside.
    const cut = Number(last.extent_offset) + Number(last.stored_size) - 1;
    await h.runtime.blobs.put(extentKey(id), saved.subarray(0, cut));

    const report = await runFsck(h.runtime);
    expect(found(report)).toEqual({ blockSizeMismatch: 1 });
    expect(report.problems.blockSizeMismatch.examples).toEqual([
      { subject: blockKey(last.hash), detail: `ends at byte ${cut + 1} of ${extentKey(id)}, which has ${cut}` },
    ]);

    await h.runtime.blobs.put(extentKey(id), saved);
    expect(found(await runFsck(h.runtime))).toEqual({});
  });

  it('reports objects under extents/ that no row names as unknownObject', async () => {
    const unknown = extentKey(randomBytes(16).toString('hex'));
    const foreign = 'extents/not-an-id';
    await h.runtime.blobs.put(unknown, Buffer.from('a crash leftover'));
    await h.runtime.blobs.put(foreign, Buffer.from('someone else'));

    const report = await runFsck(h.runtime);
    expect(found(report)).toEqual({ unknownObject: 2 });
    expect(report.problems.unknownObject.examples).toEqual(
      expect.arrayContaining([
        { subject: unknown, detail: 'no block in it' },
        { subject: foreign, detail: 'not a key of this store' },
      ]),
    );
    expect(formatFsckReport(report)).toContain("the cleaner's full scan deletes them");

    await h.runtime.blobs.delete(unknown);
    await h.runtime.blobs.delete(foreign);
    expect(found(await runFsck(h.runtime))).toEqual({});
  });

  it('is clean after the cleaner drops the blocks only a deleted file used, keeping partly dead extents', async () => {
    const bigBlocks = await h.runtime.meta.getContentBlocks(sha256(big));
    const otherHashes = new Set((await h.runtime.meta.getContentBlocks(sha256(other))).map((b) => b.hash));
    expect((await del(h.app, `${dir}/big`, T0 + 1)).status).toBe(200);
    await h.runtime.cleaner.run();

    // big's blocks other does not use are gone, and some of them shared an extent other still needs.
    const rows = await extentRows();
    const left = new Set(rows.map((r) => r.hash));
    const dropped = bigBlocks.filter((b) => !otherHashes.has(b.hash));
    expect(dropped.length).toBeGreaterThan(0);
    for (const b of dropped) expect(left.has(b.hash)).toBe(false);
    const kept = new Set(rows.map((r) => r.extent));
    expect(dropped.some((b) => kept.has(b.extent!))).toBe(true);

    const report = await runFsck(h.runtime);
    expect(found(report)).toEqual({});
    expect(report.scanned.blocks).toBe(rows.length);
    const { content } = await getContent(h.app, `${dir}/other`);
    expect(content?.equals(other)).toBe(true);
  });
});
