// The cleaner on every backend: what it deletes, what it must never delete, failure handling,
// and a race of uploads sharing blocks against repeated passes with a zero grace period.
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BlobStore } from '../../src/blobs/blob-store.js';
import { Cleaner, DEFAULT_CLEANER_OPTIONS } from '../../src/cleaner/cleaner.js';
import { AppError } from '../../src/errors.js';
import { moduleLogger } from '../../src/log.js';
import { blockKey, mapKey } from '../../src/store/keys.js';
import { pseudoRandom, sha256, uid } from '../support/ft.js';
import { BACKENDS, makeHarness, type Harness } from '../support/harness.js';
import { checkConsistency, CONSISTENT } from '../support/recount.js';
import { putFile, racingWriters, readFile } from '../support/store-io.js';

// One object per block (EXTENT_BYTES 0) on every backend: test/cleaner/extents.test.ts covers extents.
const SMALL_CHUNKS = { CHUNK_MIN_SIZE: '4096', CHUNK_AVG_SIZE: '16384', CHUNK_MAX_SIZE: '65536', CLEANER_GRACE_SECONDS: '0', EXTENT_BYTES: '0' };
const T0 = 1_700_000_000;
const PIECE = 96 * 1024;



/** Fault injection: a real store whose deletes (or lists) fail on demand. No real S3 can be told to do that. */
class FaultyBlobs implements BlobStore {
  failDeletes = false;
  failList = false;
  constructor(private readonly inner: BlobStore) {}
  get describe() {
    return this.inner.describe;
  }
  put(...a: Parameters<BlobStore['put']>) {
    return this.inner.put(...a);
  }
  get(...a: Parameters<BlobStore['get']>) {
    return this.inner.get(...a);
  }
  getRange(...a: Parameters<BlobStore['getRange']>) {
    return this.inner.getRange(...a);
  }
  head(...a: Parameters<BlobStore['head']>) {
    return this.inner.head(...a);
  }
  async delete(key: string) {
    if (this.failDeletes) throw new Error('injected delete failure');
    return this.inner.delete(key);
  }
  async *list(prefix: string) {
    if (this.failList) throw new Error('injected list failure');
    yield* this.inner.list(prefix);
  }
  ping(signal?: AbortSignal) {
    return this.inner.ping(signal);
  }
  close() {
    return this.inner.close();
  }
}

describe.each(BACKENDS)('cleaner on $name', ({ blobs, meta }) => {
  let h: Harness;
  beforeAll(async () => {
    h = await makeHarness(blobs, SMALL_CHUNKS, meta);
  });
  afterAll(async () => {
    await h?.close();
  });

  const blobExists = async (key: string) => (await h.runtime.blobs.head(key)) !== null;

  it('deletes the map and blocks of overwritten and deleted content, keeping shared blocks', async () => {
    const shared = pseudoRandom(4 * PIECE, 5);
    const a = Buffer.concat([shared, randomBytes(3 * PIECE)]);
    const b = Buffer.concat([shared, randomBytes(3 * PIECE)]);
    const path = `gc-${uid()}`;
    await putFile(h, path, a, T0);
    const aBlocks = await h.runtime.meta.getContentBlocks(sha256(a));
    await putFile(h, path, b, T0 + 1);
    const bBlocks = new Set((await h.runtime.meta.getContentBlocks(sha256(b))).map((x) => x.hash));
    const onlyA = aBlocks.filter((x) => !bBlocks.has(x.hash));
    expect(onlyA.length).toBeGreaterThan(0);
    expect(aBlocks.length - onlyA.length).toBeGreaterThan(0);

    const report = await h.runtime.cleaner.run();
    // A packed local store compacts after each pass (its own tests check what that frees).
    expect(report.compacted !== undefined).toBe(h.runtime.blobs.compact !== undefined);
    expect(report.maps).toBeGreaterThanOrEqual(1);
    expect(report.blocks).toBeGreaterThanOrEqual(onlyA.length);
    expect(await blobExists(mapKey(sha256(a)))).toBe(false);
    for (const x of onlyA) expect(await blobExists(blockKey(x.hash))).toBe(false);
    for (const x of bBlocks) expect(await blobExists(blockKey(x))).toBe(true);
    expect((await readFile(h, path)).equals(b)).toBe(true);

    expect(await h.runtime.store.delete(path, T0 + 2)).toBe('deleted');
    await h.runtime.cleaner.run();
    for (const x of bBlocks) expect(await blobExists(blockKey(x))).toBe(false);
    expect(await checkConsistency(h.runtime)).toEqual(CONSISTENT);
  });

  it('a content of one block has no map; its block is collected like any other', async () => {
    const one = randomBytes(3000); // under CHUNK_MIN_SIZE: one block, named by the content hash
    const two = randomBytes(3 * PIECE);
    const path = `one-${uid()}`;
    const result = await putFile(h, path, one);
    expect(result.contentHash).toBe(sha256(one));
    expect(await blobExists(blockKey(sha256(one)))).toBe(true);
    expect(await blobExists(mapKey(sha256(one)))).toBe(false);
    await putFile(h, `${path}-two`, two);
    expect(await blobExists(mapKey(sha256(two)))).toBe(true); // several blocks: mapped
    expect(await checkConsistency(h.runtime)).toEqual(CONSISTENT);
    // The full scan knows a one-block content by its row, with or without a map (older stores
    // wrote one for every content).
    await h.runtime.blobs.put(mapKey(sha256(one)), Buffer.from('{}'));
    await h.runtime.cleaner.run({ fullScan: true });
    expect(await blobExists(mapKey(sha256(one)))).toBe(true);

    expect(await h.runtime.store.delete(path, T0)).toBe('deleted');
    await h.runtime.cleaner.run();
    expect(await blobExists(blockKey(sha256(one)))).toBe(false);
    expect(await blobExists(mapKey(sha256(one)))).toBe(false);
    expect(await checkConsistency(h.runtime)).toEqual(CONSISTENT);
  });

  it('a small content sent whole is one gzip member at maps/, collected with its row', async () => {
    const small = Buffer.from(`small cleaner file ${uid()}\n`.repeat(100));
    const wire = gzipSync(small);
    const path = `member-${uid()}`;
    await h.runtime.store.put({ path, version: T0, body: Readable.from([wire]), bodyLength: wire.length, gzip: true });
    expect(await blobExists(mapKey(sha256(small)))).toBe(true);
    expect(await blobExists(blockKey(sha256(small)))).toBe(false);
    expect((await readFile(h, path)).equals(small)).toBe(true);
    expect(await checkConsistency(h.runtime)).toEqual(CONSISTENT);
    await h.runtime.cleaner.run({ fullScan: true }); // known by its row: not an orphan
    expect(await blobExists(mapKey(sha256(small)))).toBe(true);

    expect(await h.runtime.store.delete(path, T0)).toBe('deleted');
    await h.runtime.cleaner.run();
    expect(await blobExists(mapKey(sha256(small)))).toBe(false);
    expect(await checkConsistency(h.runtime)).toEqual(CONSISTENT);
  });

  it("refuses a small upload over a leftover that is not its member, until the full scan removes it", async () => {
    const small = Buffer.from(`leftover clash ${uid()}\n`.repeat(50));
    const wire = gzipSync(small);
    const key = mapKey(sha256(small));
    await h.runtime.blobs.put(key, Buffer.from('{"format":"s3dedup-map/1"}')); // an older build's map, its commit lost
    const upload = () => h.runtime.store.put({ path: `clash-${uid()}`, version: T0, body: Readable.from([wire]), bodyLength: wire.length, gzip: true });
    await expect(upload()).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    expect(await h.runtime.meta.hasContent(sha256(small))).toBe(false);
    await h.runtime.cleaner.run({ fullScan: true });
    expect(await blobExists(key)).toBe(false);
    await upload();
    expect(gunzipSync(await h.runtime.blobs.get(key)).equals(small)).toBe(true);
    expect(await checkConsistency(h.runtime)).toEqual(CONSISTENT);
  });

  it('keeps garbage younger than the grace period', async () => {
    const data = randomBytes(2 * PIECE);
    const path = `grace-${uid()}`;
    await putFile(h, path, data);
    await h.runtime.store.delete(path, T0);
    const patient = new Cleaner(h.runtime.meta, h.runtime.blobs, { ...DEFAULT_CLEANER_OPTIONS, graceSeconds: 3600 }, moduleLogger('cleaner'));
    const report = await patient.run();
    expect(report.maps + report.blocks).toBe(0);
    expect(await blobExists(mapKey(sha256(data)))).toBe(true);
    await h.runtime.cleaner.run();
    expect(await blobExists(mapKey(sha256(data)))).toBe(false);
  });

  it('full scan deletes unknown blocks/ and maps/ objects and nothing else', async () => {
    const keep = randomBytes(PIECE);
    const path = `scan-${uid()}`;
    await putFile(h, path, keep);
    const orphanBlock = blockKey(randomBytes(32).toString('hex'));
    const orphanMap = mapKey(randomBytes(32).toString('hex'));
    const foreign = `blocks/not-a-hash-${uid()}`;
    for (const k of [orphanBlock, orphanMap]) await h.runtime.blobs.put(k, Buffer.from('leftover'));
    await h.runtime.blobs.put(foreign, Buffer.from('someone else'));

    const quick = await h.runtime.cleaner.run();
    expect(quick.orphans).toBe(0);
    expect(await blobExists(orphanBlock)).toBe(true);

    const full = await h.runtime.cleaner.run({ fullScan: true });
    expect(full.orphans).toBeGreaterThanOrEqual(2);
    expect(await blobExists(orphanBlock)).toBe(false);
    expect(await blobExists(orphanMap)).toBe(false);
    expect(await blobExists(foreign)).toBe(true);
    expect(await blobExists('s3dedup.json')).toBe(true);
    expect((await readFile(h, path)).equals(keep)).toBe(true);
    expect(await checkConsistency(h.runtime)).toEqual(CONSISTENT);
  });

  it('fails closed: a failed deletion stays announced, blocks uploads of it, and the next pass finishes it', async () => {
    const faulty = new FaultyBlobs(h.runtime.blobs);
    const cleaner = new Cleaner(h.runtime.meta, faulty, { ...DEFAULT_CLEANER_OPTIONS, graceSeconds: 0 }, moduleLogger('cleaner'));
    const data = randomBytes(2 * PIECE);
    const path = `faulty-${uid()}`;
    await putFile(h, path, data);
    await h.runtime.store.delete(path, T0);

    faulty.failDeletes = true;
    await expect(cleaner.run()).rejects.toThrow(/injected delete failure/);
    // The content is gone from the metadata and its map announced: re-uploading the same
    // content now must not reuse anything that may be half-deleted.
    await expect(putFile(h, `${path}-again`, data)).rejects.toSatisfy((e: unknown) => e instanceof AppError && e.status === 503);

    faulty.failDeletes = false;
    const resumed = await cleaner.run();
    expect(resumed.resumed).toBeGreaterThan(0);
    await putFile(h, `${path}-again`, data, T0 + 1);
    expect((await readFile(h, `${path}-again`)).equals(data)).toBe(true);

    faulty.failList = true;
    await h.runtime.blobs.put(blockKey(randomBytes(32).toString('hex')), Buffer.from('x'));
    await expect(cleaner.run({ fullScan: true })).rejects.toThrow(/injected list failure/);
    expect(await checkConsistency(h.runtime)).toEqual(CONSISTENT);
  });

  it('never loses a referenced block while uploads sharing blocks race repeated passes (grace 0)', { timeout: 120_000 }, async () => {
    const pieces = Array.from({ length: 6 }, (_, i) => pseudoRandom(PIECE, 1000 + i));
    let passes = 0;
    /** passes that deleted something while the uploads went on */
    let collecting = 0;
    let writing = true;
    const collector = async () => {
      while (writing) {
        const report = await h.runtime.cleaner.run();
        passes++;
        if (writing && report.maps + report.blocks > 0) collecting++;
        await new Promise((r) => setImmediate(r));
      }
    };
    const col = collector();
    const raced = () => passes > 3 && collecting > 0;
    const { expected, retries } = await racingWriters(h, { dir: `race-${uid()}`, pieces, rounds: 12, version: T0, until: raced });
    writing = false;
    await col;
    await h.runtime.cleaner.run({ fullScan: true });

    expect(raced()).toBe(true);
    for (const [path, data] of expected) expect((await readFile(h, path)).equals(data), path).toBe(true);
    expect(await checkConsistency(h.runtime)).toEqual(CONSISTENT);
    console.log(`${meta}/${blobs}: ${passes} cleaner passes (${collecting} deleting), ${retries} uploads retried after a 503`);
  });
});
