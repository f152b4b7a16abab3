// The cleaner with extents (EXTENT_BYTES > 0) on every backend: an upload packs its new blocks
// into a few `extents/<id>` objects and no `blocks/` ones; a pass deletes an extent with the
// last block row that names it (overwrite, delete), keeps a partly dead extent whole for the
// blocks another content still reuses from it (a commit that reused one of its dropped blocks
// fails with a retryable 503), and the full scan deletes extents no row names
// (crash leftovers) but nothing else under extents/, and rewrites an extent at most half live
// (its blocks move to a new one, the old one goes a grace period later, readable until then);
// a race of uploads sharing blocks against repeated passes (full scans among them, with their
// compactions) with a zero grace period loses nothing.
// One object per block is test/cleaner/cleaner.test.ts.
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Cleaner, DEFAULT_CLEANER_OPTIONS } from '../../src/cleaner/cleaner.js';
import { AppError } from '../../src/errors.js';
import type { BlockRef } from '../../src/meta/metadata-store.js';
import { moduleLogger } from '../../src/log.js';
import { GcStore } from '../../src/meta/gc-store.js';
import { FSCK_PROBLEM_KINDS, runFsck } from '../../src/maintenance/fsck.js';
import { readExtentTrailer } from '../../src/store/extent.js';
import { blockKey, extentKey } from '../../src/store/keys.js';
import { pseudoRandom, sha256, uid } from '../support/ft.js';
import { BACKENDS, makeHarness, type Harness } from '../support/harness.js';
import { checkConsistency, CONSISTENT } from '../support/recount.js';
import { listKeys as listBlobKeys, putFile, racingWriters, readFile } from '../support/store-io.js';

const EXTENT_BYTES = 131_072;
// No block cache: every read-back below goes to the blob store, so a lost extent cannot hide.
const ENV = {
  CHUNK_MIN_SIZE: '4096',
  CHUNK_AVG_SIZE: '16384',
  CHUNK_MAX_SIZE: '65536',
  CLEANER_GRACE_SECONDS: '0',
  EXTENT_BYTES: String(EXTENT_BYTES),
  BLOCK_CACHE_BYTES: '0',
};
const T0 = 1_700_000_000;
const KiB = 1024;
const TRAILER_ENTRY = 36; // sha256 + u32 length per block (src/store/extent.ts)




/** The extent ids a content's blocks name, in order of first use. */
async function extentsOf(h: Harness, contentHash: string): Promise<string[]> {
  const blocks = await h.runtime.meta.getContentBlocks(contentHash);
  return [...new Set(blocks.map((b) => b.extent ?? null))].map((e) => {
    if (e === null) throw new Error(`a block of ${contentHash} has no extent`);
    return e;
  });
}

const sorted = (ids: Iterable<string>) => [...ids].map(extentKey).sort();

/** A cut near the middle of `blocks` between two blocks of one extent: the k blocks before it. */
function cutInsideExtent(blocks: BlockRef[]): number {
  let k = Math.floor(blocks.length / 2);
  while (k < blocks.length - 1 && blocks[k - 1].extent !== blocks[k].extent) k++;
  expect(blocks[k - 1].extent).toBe(blocks[k].extent);
  return k;
}

describe.each(BACKENDS)('cleaner with extents on $name', ({ blobs, meta }) => {
  let h: Harness;
  // A fresh store per case, so listings of the whole bucket are exact.
  beforeEach(async () => {
    h = await makeHarness(blobs, ENV, meta);
  });
  afterEach(async () => {
    await h?.close();
  });

  const exists = async (key: string) => (await h.runtime.blobs.head(key)) !== null;

  /**
   * A (640 KiB random) stored, then B: A's first k blocks (`cutAt` picks k; `prefix` bytes) and
   * `tail` new bytes, so that B reuses those blocks where A's upload stored them.
   */
  async function aThenB(cutAt: (aBlocks: BlockRef[]) => number | Promise<number>, tail: number) {
    const a = randomBytes(640 * KiB);
    const aPath = `a-${uid()}`;
    await putFile(h, aPath, a);
    const aBlocks = await h.runtime.meta.getContentBlocks(sha256(a));
    const k = await cutAt(aBlocks);
    const prefix = aBlocks.slice(0, k).reduce((s, x) => s + x.size, 0);
    const b = Buffer.concat([a.subarray(0, prefix), randomBytes(tail)]);
    const bPath = `b-${uid()}`;
    await putFile(h, bPath, b);
    return { a, aPath, aBlocks, k, prefix, b, bPath };
  }

  it("packs an upload's new blocks, in content order, into a few extents and no block objects", async () => {
    const data = randomBytes(600 * KiB);
    const path = `pack-${uid()}`;
    await putFile(h, path, data);

    expect(await listBlobKeys(h.runtime.blobs, 'blocks/')).toEqual([]);
    const listed = await listBlobKeys(h.runtime.blobs, 'extents/');
    expect(listed.length).toBeGreaterThanOrEqual(3);
    expect(listed.length).toBeLessThanOrEqual(6); // ~600 KiB in extents of at least 128 KiB of segments

    const rows = await h.runtime.meta.db.selectFrom('blocks').select(['hash', 'extent', 'extent_offset', 'stored_size']).execute();
    expect(rows.length).toBeGreaterThan(listed.length); // several blocks per extent
    for (const r of rows) expect(r.extent, r.hash).not.toBeNull();
    expect(sorted(new Set(rows.map((r) => r.extent!)))).toEqual(listed);

    // In content order: each block follows the previous one in its extent, or opens the next.
    const blocks = await h.runtime.meta.getContentBlocks(sha256(data));
    expect(blocks.length).toBe(rows.length); // random data: no block repeats
    const order = await extentsOf(h, sha256(data));
    for (let i = 0; i < blocks.length; i++) {
      const b = blocks[i];
      const prev = blocks[i - 1];
      if (prev && prev.extent === b.extent) expect(b.offset).toBe(prev.offset! + prev.storedSize);
      else expect(b.offset).toBe(0);
    }
    // Each object is its segments then the trailer listing them; all but the last reach EXTENT_BYTES.
    for (const [i, id] of order.entries()) {
      const inIt = blocks.filter((b) => b.extent === id);
      const segmentBytes = inIt.reduce((s, b) => s + b.storedSize, 0);
      if (i < order.length - 1) expect(segmentBytes).toBeGreaterThanOrEqual(EXTENT_BYTES);
      const object = await h.runtime.blobs.get(extentKey(id));
      expect(object.length).toBe(segmentBytes + inIt.length * TRAILER_ENTRY + 8);
      expect(readExtentTrailer(object)).toEqual(inIt.map((b) => ({ hash: b.hash, offset: b.offset, length: b.storedSize })));
    }

    expect((await readFile(h, path)).equals(data)).toBe(true);
    expect(await checkConsistency(h.runtime)).toEqual(CONSISTENT);
  });

  it('deletes the extents of overwritten and deleted content, with their block rows, in one pass each', async () => {
    const path = `over-${uid()}`;
    const v1 = randomBytes(600 * KiB);
    const v2 = randomBytes(400 * KiB);
    await putFile(h, path, v1, T0);
    const e1 = await extentsOf(h, sha256(v1));
    await putFile(h, path, v2, T0 + 1);
    const e2 = await extentsOf(h, sha256(v2));
    const v2Blocks = await h.runtime.meta.getContentBlocks(sha256(v2));
    expect(e1.length).toBeGreaterThan(1);
    expect(await listBlobKeys(h.runtime.blobs, 'extents/')).toEqual(sorted([...e1, ...e2]));

    const overwritten = await h.runtime.cleaner.run();
    expect(overwritten.extents).toBe(e1.length);
    expect(await listBlobKeys(h.runtime.blobs, 'extents/')).toEqual(sorted(e2));
    expect(await h.count('blocks')).toBe(v2Blocks.length);
    expect((await readFile(h, path)).equals(v2)).toBe(true);

    expect(await h.runtime.store.delete(path, T0 + 2)).toBe('deleted');
    const deleted = await h.runtime.cleaner.run();
    expect(deleted.extents).toBe(e2.length);
    expect(deleted.blocks).toBe(v2Blocks.length);
    expect(await listBlobKeys(h.runtime.blobs, 'extents/')).toEqual([]);
    expect(await listBlobKeys(h.runtime.blobs, 'blocks/')).toEqual([]);
    expect(await h.count('blocks')).toBe(0);
    expect(await h.count('contents')).toBe(0);
    // Nothing is left to announce, and a second pass finds nothing.
    const again = await h.runtime.cleaner.run();
    expect(again.extents + again.blocks + again.maps + again.resumed).toBe(0);
    expect(await checkConsistency(h.runtime)).toEqual(CONSISTENT);
  });

  it("keeps a partly dead extent whole for the blocks another content reuses, and frees A's own", async () => {
    // Cut B's shared prefix between two blocks of one extent, so that extent ends up partly dead.
    const { a, aPath, aBlocks, k, b, bPath } = await aThenB(cutInsideExtent, 300 * KiB);
    const split = aBlocks[k].extent!;

    const bBlocks = await h.runtime.meta.getContentBlocks(sha256(b));
    expect(bBlocks.slice(0, k).map((x) => x.hash)).toEqual(aBlocks.slice(0, k).map((x) => x.hash));
    const aExtents = await extentsOf(h, sha256(a));
    const bExtents = await extentsOf(h, sha256(b));
    // B's reused blocks still name A's extents; its new blocks went into extents of its own.
    expect(bExtents).toContain(split);
    for (const x of bBlocks.slice(k)) expect(aExtents).not.toContain(x.extent);
    const bHashes = new Set(bBlocks.map((x) => x.hash));
    const aOnly = aBlocks.filter((x) => !bHashes.has(x.hash));
    const dead = aExtents.filter((e) => !bExtents.includes(e));
    expect(dead.length).toBeGreaterThan(0);
    const splitSize = (await h.runtime.blobs.head(extentKey(split)))!.size;

    expect(await h.runtime.store.delete(aPath, T0 + 1)).toBe('deleted');
    const report = await h.runtime.cleaner.run();
    expect(report.extents).toBe(dead.length);
    expect(report.blocks).toBe(aOnly.length);
    for (const e of dead) expect(await exists(extentKey(e)), extentKey(e)).toBe(false);
    for (const e of bExtents) expect(await exists(extentKey(e)), extentKey(e)).toBe(true);
    expect((await h.runtime.blobs.head(extentKey(split)))!.size).toBe(splitSize); // whole, not rewritten
    expect(await listBlobKeys(h.runtime.blobs, 'extents/')).toEqual(sorted(bExtents));
    expect(await h.count('blocks')).toBe(bBlocks.length);
    // The dropped rows were announced by block key, which is what a commit reusing one checks.
    const logged = new Set(
      (await h.runtime.meta.db.selectFrom('gc_log').select('key').where('key', 'in', aOnly.map((x) => blockKey(x.hash))).execute()).map((r) => r.key),
    );
    expect(logged.size).toBe(aOnly.length);

    expect((await readFile(h, bPath)).equals(b)).toBe(true);
    expect(await checkConsistency(h.runtime)).toEqual(CONSISTENT);

    // A again: the shared blocks are reused where B keeps them, the dropped ones written anew
    // (never resolved to their old place in the split extent).
    const again = `a-again-${uid()}`;
    await putFile(h, again, a, T0 + 2);
    const newA = await h.runtime.meta.getContentBlocks(sha256(a));
    for (const x of newA.slice(k)) {
      expect(x.extent).not.toBe(split);
      expect(dead).not.toContain(x.extent);
    }
    expect((await readFile(h, again)).equals(a)).toBe(true);
    expect((await readFile(h, bPath)).equals(b)).toBe(true);
    expect(await checkConsistency(h.runtime)).toEqual(CONSISTENT);
  });

  it('a commit reusing a block the cleaner dropped from a partly dead extent fails with a 503; its retry stores it anew', async () => {
    // Cut B's shared prefix between two blocks of one extent, so that extent ends up partly dead.
    // B keeps A's first k blocks, and so the split extent, alive.
    const { a, aPath, aBlocks, k, prefix, b, bPath } = await aThenB(cutInsideExtent, 100 * KiB);
    const split = aBlocks[k].extent!;
    // C is A from block k on: A's blocks k.. (the last, cut by A's end, aside) are reused, and
    // block k has no object of its own: it is a segment of the split extent.
    const head = a.subarray(prefix);
    const c = Buffer.concat([head, randomBytes(64 * KiB)]);
    const victim = aBlocks[k].hash;

    // Hold C's upload after the store has told it that it has block k.
    const metaStore = h.runtime.meta;
    const findBlocks = metaStore.findBlocks;
    let sawVictim!: () => void;
    const victimFound = new Promise<void>((r) => (sawVictim = r));
    metaStore.findBlocks = async function (hashes: string[]) {
      const found = await findBlocks.call(this, hashes);
      if (found.has(victim)) sawVictim();
      return found;
    };
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    async function* body() {
      yield head;
      await gate;
      yield c.subarray(head.length);
    }
    const cPath = `c-${uid()}`;
    try {
      const upload = h.runtime.store.put({ path: cPath, version: T0, body: Readable.from(body()), gzip: false });
      upload.catch(() => {}); // awaited below
      await victimFound;
      expect(await h.runtime.store.delete(aPath, T0 + 1)).toBe('deleted');
      const report = await h.runtime.cleaner.run();
      expect(report.blocks).toBeGreaterThan(0);
      expect(await h.runtime.meta.findBlocks([victim])).toEqual(new Map()); // the row is gone
      expect(await exists(extentKey(split))).toBe(true); // its extent is not: B still uses it
      release();
      // It names a dropped block of A's it reused (block k or another), never a missing object.
      const dropped = aBlocks.slice(k).map((x) => blockKey(x.hash));
      await expect(upload).rejects.toSatisfy(
        (e: unknown) => e instanceof AppError && e.code === 'UNAVAILABLE' && dropped.some((key) => e.message.startsWith(`${key} was garbage-collected`)),
      );
    } finally {
      metaStore.findBlocks = findBlocks;
      release();
    }
    expect(await h.runtime.store.open(cPath)).toBeNull();

    await putFile(h, cPath, c, T0 + 2);
    const cBlocks = await h.runtime.meta.getContentBlocks(sha256(c));
    const again = cBlocks.find((x) => x.hash === victim)!;
    expect(again.extent).toBeDefined();
    expect(again.extent).not.toBe(split);
    expect((await readFile(h, cPath)).equals(c)).toBe(true);
    expect((await readFile(h, bPath)).equals(b)).toBe(true);
    expect(await checkConsistency(h.runtime)).toEqual(CONSISTENT);
  });

  it('full scan deletes extents no row names once past the grace period, and nothing else under extents/', async () => {
    const keep = randomBytes(300 * KiB);
    const path = `scan-${uid()}`;
    await putFile(h, path, keep);
    const known = await extentsOf(h, sha256(keep));
    const orphan = extentKey(randomBytes(16).toString('hex'));
    const foreign = 'extents/not-an-id';
    const tooLong = extentKey(randomBytes(32).toString('hex')); // a block hash's length, not an id's
    const upper = extentKey(randomBytes(16).toString('hex').toUpperCase());
    await h.runtime.blobs.put(orphan, Buffer.concat([randomBytes(5000), Buffer.from([0, 0, 0, 0]), Buffer.from('S3DE')]));
    for (const k of [foreign, tooLong, upper]) await h.runtime.blobs.put(k, Buffer.from('someone else'));

    const quick = await h.runtime.cleaner.run();
    expect(quick.orphans).toBe(0);
    expect(await exists(orphan)).toBe(true);
    const patient = new Cleaner(h.runtime.meta, h.runtime.blobs, { ...DEFAULT_CLEANER_OPTIONS, graceSeconds: 3600 }, moduleLogger('cleaner'));
    expect((await patient.run({ fullScan: true })).orphans).toBe(0); // young: may be an upload in flight
    expect(await exists(orphan)).toBe(true);

    const full = await h.runtime.cleaner.run({ fullScan: true });
    expect(full.orphans).toBe(1);
    expect(await exists(orphan)).toBe(false);
    expect(await listBlobKeys(h.runtime.blobs, 'extents/')).toEqual([...sorted(known), foreign, tooLong, upper].sort());
    expect((await readFile(h, path)).equals(keep)).toBe(true);
    expect(await checkConsistency(h.runtime)).toEqual(CONSISTENT);
  });

  /**
   * A stored, then B sharing A's blocks up to one block of an extent that B's share fills at most
   * 40% of; A deleted and collected, so that extent is mostly dead.
   */
  async function mostlyDeadExtent() {
    // The cut: after the first block of an extent that this one block fills at most 40% of.
    const afterSmallFirstBlock = async (blocks: BlockRef[]) => {
      for (let i = 0; i < blocks.length - 2; i++) {
        const e = blocks[i].extent!;
        if (i > 0 && blocks[i - 1].extent === e) continue; // the extent's first block
        const size = (await h.runtime.blobs.head(extentKey(e)))!.size;
        if (blocks[i + 1].extent === e && blocks[i].storedSize <= 0.4 * size) return i + 1;
      }
      throw new Error('no extent whose first block fills at most 40% of it');
    };
    const { aPath, aBlocks, k, b, bPath } = await aThenB(afterSmallFirstBlock, 300 * KiB);
    const extent = aBlocks[k - 1].extent!;
    const shared = aBlocks.slice(0, k).filter((x) => x.extent === extent);
    expect(await h.runtime.store.delete(aPath, T0 + 1)).toBe('deleted');
    await h.runtime.cleaner.run(); // A's own blocks go; the mostly dead extent stays whole
    const size = (await h.runtime.blobs.head(extentKey(extent)))!.size;
    return { b, bPath, extent, size, shared };
  }

  it('a full scan rewrites an extent at most half live: its blocks move to a new extent, and it goes a grace period later', async () => {
    const { b, bPath, extent, size, shared } = await mostlyDeadExtent();
    const before = await listBlobKeys(h.runtime.blobs, 'extents/');
    expect(before).toContain(extentKey(extent));

    const patient = new Cleaner(h.runtime.meta, h.runtime.blobs, { ...DEFAULT_CLEANER_OPTIONS, graceSeconds: 3600 }, moduleLogger('cleaner'));
    const young = await patient.run({ fullScan: true });
    expect(young.extentsCompacted?.rewritten).toBe(0); // written within the grace period: left alone

    const full = await h.runtime.cleaner.run({ fullScan: true });
    expect(full.extentsCompacted).toMatchObject({ rewritten: 1, bytesRetired: size });
    const rows = await h.runtime.meta.db
      .selectFrom('blocks')
      .select(['hash', 'extent', 'extent_offset', 'stored_size'])
      .where('hash', 'in', shared.map((x) => x.hash))
      .orderBy('extent_offset')
      .execute();
    const moved = rows[0].extent!;
    expect(moved).not.toBe(extent);
    expect(new Set(rows.map((r) => r.extent))).toEqual(new Set([moved]));
    const copy = await h.runtime.blobs.get(extentKey(moved));
    expect(copy.length).toBeLessThan(size);
    expect(readExtentTrailer(copy)).toEqual(shared.map((x) => ({ hash: x.hash, offset: rows.find((r) => r.hash === x.hash)!.extent_offset, length: x.storedSize })));
    expect(full.extentsCompacted?.bytesWritten).toBe(shared.reduce((s, x) => s + x.storedSize, 0));

    // Retired, not deleted: a GET that looked the blocks up before the move still reads them there.
    expect(await exists(extentKey(extent))).toBe(true);
    for (const x of shared) expect((await h.runtime.blobs.getRange(extentKey(extent), x.offset!, x.storedSize)).length).toBe(x.storedSize);
    expect(await h.count('retired_extents')).toBe(1);
    expect((await patient.run({ fullScan: true })).orphans).toBe(0); // known while retired, not an orphan
    const fsck = await runFsck(h.runtime);
    expect(FSCK_PROBLEM_KINDS.filter((k) => fsck.problems[k].count > 0)).toEqual([]);
    expect(await exists(extentKey(extent))).toBe(true);
    expect((await readFile(h, bPath)).equals(b)).toBe(true);
    expect(await checkConsistency(h.runtime)).toEqual(CONSISTENT);

    const later = await h.runtime.cleaner.run(); // grace 0: the retirement has aged
    expect(later.extents).toBe(1);
    expect(await exists(extentKey(extent))).toBe(false);
    expect(await h.count('retired_extents')).toBe(0);
    expect((await readFile(h, bPath)).equals(b)).toBe(true);
    expect(await checkConsistency(h.runtime)).toEqual(CONSISTENT);
    // Nothing more to do: the new extent is all live.
    expect((await h.runtime.cleaner.run({ fullScan: true })).extentsCompacted?.rewritten).toBe(0);
  });

  it('a compaction that fails before or after writing its copy moves nothing; the copy left behind is an orphan', async () => {
    const { b, bPath, extent, shared } = await mostlyDeadExtent();
    // The fault a real store cannot produce on demand: PUTs of extents fail, before or after
    // the object is written (the second as a crash between the write and the row move would).
    let mode: 'ok' | 'before' | 'after' = 'before';
    const blobs = new Proxy(h.runtime.blobs, {
      get(target, prop, receiver) {
        if (prop === 'put') {
          return async (...a: Parameters<typeof target.put>) => {
            if (mode === 'before' && a[0].startsWith('extents/')) throw new Error('injected extent PUT failure');
            await target.put(...a);
            if (mode === 'after' && a[0].startsWith('extents/')) throw new Error('injected failure after the extent PUT');
          };
        }
        const v = Reflect.get(target, prop, receiver);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
    const faulty = new Cleaner(h.runtime.meta, blobs, { ...DEFAULT_CLEANER_OPTIONS, graceSeconds: 0 }, moduleLogger('cleaner'));
    const where = async () =>
      new Set((await h.runtime.meta.db.selectFrom('blocks').select('extent').where('hash', 'in', shared.map((x) => x.hash)).execute()).map((r) => r.extent));
    const before = await listBlobKeys(h.runtime.blobs, 'extents/');

    await expect(faulty.run({ fullScan: true })).rejects.toThrow('injected extent PUT failure');
    expect(await where()).toEqual(new Set([extent]));
    expect(await listBlobKeys(h.runtime.blobs, 'extents/')).toEqual(before);

    mode = 'after';
    await expect(faulty.run({ fullScan: true })).rejects.toThrow('injected failure after the extent PUT');
    expect(await where()).toEqual(new Set([extent]));
    const leftover = (await listBlobKeys(h.runtime.blobs, 'extents/')).filter((k) => !before.includes(k));
    expect(leftover).toHaveLength(1);
    expect(await h.count('retired_extents')).toBe(0);
    expect((await readFile(h, bPath)).equals(b)).toBe(true);
    expect(await checkConsistency(h.runtime)).toEqual(CONSISTENT);

    mode = 'ok';
    const full = await faulty.run({ fullScan: true });
    expect(full.orphans).toBe(1); // the copy no row named
    expect(full.extentsCompacted?.rewritten).toBe(1);
    expect(await exists(leftover[0])).toBe(false);
    expect(await where()).not.toEqual(new Set([extent]));
    expect((await readFile(h, bPath)).equals(b)).toBe(true);
    expect(await checkConsistency(h.runtime)).toEqual(CONSISTENT);
  });

  it('moving the blocks of an extent that no row names any more moves nothing and retires nothing', async () => {
    const { extent, shared } = await mostlyDeadExtent();
    await h.runtime.cleaner.run({ fullScan: true }); // moves them away
    const gc = new GcStore(h.runtime.meta);
    expect(await gc.moveExtentBlocks(extent, 'f'.repeat(32), shared.map((x) => ({ hash: x.hash, offset: 0 })))).toBe(0);
    const rows = await h.runtime.meta.db.selectFrom('blocks').select('extent').distinct().where('hash', 'in', shared.map((x) => x.hash)).execute();
    expect(rows).toHaveLength(1);
    expect(rows[0].extent).not.toBe('f'.repeat(32));
    expect(await h.count('retired_extents')).toBe(1); // the one the compaction retired, once
  });

  it('never loses a referenced block while uploads sharing blocks race repeated passes and full scans (grace 0)', async () => {
    const PIECE = 96 * KiB;
    const pieces = Array.from({ length: 6 }, (_, i) => pseudoRandom(PIECE, 2000 + i));
    let passes = 0;
    /** passes that deleted something while the uploads went on */
    let collecting = 0;
    let fullScans = 0;
    let rewritten = 0;
    let writing = true;
    const collector = async () => {
      let lastFull = Date.now();
      while (writing) {
        // A full scan at grace 0 takes an in-flight upload's fresh extents (and map), which
        // then fails its commit and retries; one every 40 ms, so that uploads still get through.
        const fullScan = Date.now() - lastFull >= 40;
        const report = await h.runtime.cleaner.run({ fullScan });
        if (fullScan) {
          fullScans++;
          rewritten += report.extentsCompacted?.rewritten ?? 0;
          lastFull = Date.now();
        }
        passes++;
        if (writing && report.maps + report.blocks + report.extents > 0) collecting++;
        await new Promise((r) => setImmediate(r));
      }
    };
    const col = collector();
    const raced = () => passes > 1 && collecting > 0;
    const { expected, retries } = await racingWriters(h, { dir: `race-${uid()}`, pieces, rounds: 16, version: T0, until: raced }).finally(async () => {
      writing = false;
      await col;
    });
    await h.runtime.cleaner.run({ fullScan: true });
    await h.runtime.cleaner.run(); // deletes what that full scan's compaction retired

    expect(raced()).toBe(true); // passes overlapped the uploads (the writers go on until they have)
    expect(fullScans).toBeGreaterThan(0);
    for (const [path, data] of expected) expect((await readFile(h, path)).equals(data), path).toBe(true);
    expect(await checkConsistency(h.runtime)).toEqual(CONSISTENT);
    // After a full scan at grace 0 the bucket holds exactly the extents some row names.
    const named = await h.runtime.meta.db.selectFrom('blocks').select('extent').distinct().execute();
    expect(named.every((r) => r.extent !== null)).toBe(true);
    expect(await listBlobKeys(h.runtime.blobs, 'extents/')).toEqual(sorted(named.map((r) => r.extent!)));
    expect(await listBlobKeys(h.runtime.blobs, 'blocks/')).toEqual([]);
    console.log(`${meta}/${blobs} extents: ${passes} cleaner passes (${collecting} deleting, ${fullScans} full scans, ${rewritten} extents compacted), ${retries} uploads retried after a 503`);
  });
});
