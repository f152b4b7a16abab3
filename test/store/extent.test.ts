// Extents (src/store/extent.ts): the trailer describes the object on its own; an upload's new
// blocks land in content order, back to back, so that GET reads a run of them with one ranged
// request (planRuns); a failed extent write fails the upload.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BlobStore } from '../../src/blobs/blob-store.js';
import { LocalBlobStore } from '../../src/blobs/local.js';
import { MetadataStore, type BlockRef } from '../../src/meta/metadata-store.js';
import { migrateToLatest } from '../../src/meta/migrate.js';
import { openSqlite } from '../../src/meta/sqlite.js';
import { ExtentWriter, extentTrailer, planRuns, readExtentTrailer } from '../../src/store/extent.js';
import { ingest, type IngestOptions } from '../../src/store/ingest.js';
import { EXTENT_ID_DIGITS, EXTENT_PREFIX, extentKey } from '../../src/store/keys.js';
import { inflateSegment } from '../../src/store/segment.js';
import { pseudoRandom, sha256 } from '../support/ft.js';

const CHUNKER = { minSize: 4096, avgSize: 16_384, maxSize: 65_536 };

describe('extent trailer', () => {
  it('lists each segment with its offset, and refuses what is not an extent', () => {
    const segs = [Buffer.from('first segment'), Buffer.alloc(0), Buffer.from('third')];
    const entries = segs.map((s, i) => ({ hash: sha256(Buffer.from([i])), length: s.length }));
    const object = Buffer.concat([...segs, extentTrailer(entries)]);
    expect(readExtentTrailer(object)).toEqual([
      { hash: entries[0].hash, offset: 0, length: 13 },
      { hash: entries[1].hash, offset: 13, length: 0 },
      { hash: entries[2].hash, offset: 13, length: 5 },
    ]);
    expect(readExtentTrailer(Buffer.from('not an extent at all'))).toBeNull();
    // A count that does not fit what precedes it is refused, not read past the start.
    expect(readExtentTrailer(Buffer.concat([Buffer.from('xy'), extentTrailer(entries).subarray(36)]))).toBeNull();
  });
});

describe('ingest into extents', () => {
  let dir: string;
  let blobs: LocalBlobStore;
  let o: Omit<IngestOptions, 'gzip'>;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 's3dedup-extent-'));
    const db = openSqlite(':memory:');
    await migrateToLatest(db);
    blobs = new LocalBlobStore({ root: dir });
    o = { chunker: CHUNKER, concurrency: 8, compressionLevel: 6, extentBytes: 131_072, blobs, meta: new MetadataStore(db) };
  });
  afterAll(async () => {
    await o.meta.close();
    await rm(dir, { recursive: true, force: true });
  });

  const listExtents = async () => {
    const keys: string[] = [];
    for await (const info of blobs.list(EXTENT_PREFIX)) keys.push(info.key);
    return keys;
  };

  it('places new blocks back to back in content order, each extent about EXTENT_BYTES, readable by its trailer', async () => {
    // Half compressible, half random: segments compress at different speeds, finishing out of order.
    const content = Buffer.concat([Buffer.from('some text, '.repeat(40_000)), pseudoRandom(600_000, 11)]);
    const before = new Set(await listExtents());
    const r = await ingest(Readable.from([content]), { ...o, gzip: false });
    const extents = (await listExtents()).filter((k) => !before.has(k));
    expect(r.blocks.length).toBeGreaterThan(10);
    expect(extents.length).toBeGreaterThan(3);
    expect(extents.every((k) => k.length === EXTENT_PREFIX.length + EXTENT_ID_DIGITS)).toBe(true);
    // Content order: each block follows the one before in its extent, or opens the next extent at 0.
    const seen = new Set<string>();
    for (let i = 0; i < r.blocks.length; i++) {
      const b = r.blocks[i];
      expect(b.extent).toBeTruthy();
      const prev = r.blocks[i - 1];
      if (prev && prev.extent === b.extent) expect(b.offset).toBe(prev.offset! + prev.storedSize);
      else {
        expect(b.offset).toBe(0);
        expect(seen.has(b.extent!)).toBe(false); // an extent is never returned to
      }
      seen.add(b.extent!);
    }
    expect(planRuns(r.blocks).length).toBe(seen.size); // one ranged read per extent
    // Each extent object is its segments then its trailer, and the segments inflate to the content.
    const parts: Buffer[] = [];
    for (const id of seen) {
      const object = await blobs.get(extentKey(id));
      const listed = readExtentTrailer(object)!;
      const mine = r.blocks.filter((b) => b.extent === id);
      expect(listed.map((e) => [e.hash, e.offset, e.length])).toEqual(mine.map((b) => [b.hash, b.offset, b.storedSize]));
      const sealedAt = listed.reduce((n, e) => n + e.length, 0);
      expect(sealedAt - listed[listed.length - 1].length).toBeLessThan(o.extentBytes);
      for (const e of listed) parts.push(inflateSegment(object.subarray(e.offset, e.offset + e.length)));
    }
    expect(Buffer.concat(parts).equals(content)).toBe(true);
  });

  it('fails the upload when an extent write fails, after waiting for the writes in flight', async () => {
    let puts = 0;
    const failing: BlobStore = Object.create(blobs, {
      put: { value: async () => { puts++; throw new Error('injected put failure'); } },
    });
    // A mock: a real store cannot be told to fail one write on demand.
    await expect(ingest(Readable.from([pseudoRandom(400_000, 12)]), { ...o, blobs: failing, gzip: false })).rejects.toThrow(/injected put failure/);
    expect(puts).toBeGreaterThan(0);
  });

  it('writes nothing for blocks the store has, and a repeated block once', async () => {
    const piece = pseudoRandom(70_000, 13);
    const writer = new ExtentWriter(blobs, 1 << 20);
    const place = await writer.append(sha256(piece), piece);
    await writer.finish();
    expect(place.offset).toBe(0);
    expect((await blobs.getRange(extentKey(place.extent), 0, piece.length)).equals(piece)).toBe(true);

    const content = Buffer.concat([piece, piece, piece]);
    const r = await ingest(Readable.from([content]), { ...o, gzip: false });
    const distinct = new Map(r.blocks.map((b) => [b.hash, b]));
    expect(r.written).toBe(distinct.size);
    const stored = [...distinct.values()].reduce((n, b) => n + b.storedSize, 0);
    expect(r.storedBytesWritten).toBe(stored);
  });
});

describe('ExtentWriter buffers', () => {
  /**
   * A store whose writes finish only when the test says so, and that checks each object's bytes
   * when it finishes against what it was given: a buffer reused too early would differ. (A mock
   * of timing: a real store cannot be held mid-write on demand.)
   */
  function slowStore() {
    type Write = { key: string; data: Buffer; object: Buffer; intact?: boolean; done(ok: boolean): void };
    const writes: Write[] = [];
    const store = {
      put: (key: string, data: Buffer) =>
        new Promise<void>((resolve, reject) => {
          const w: Write = {
            key,
            data,
            object: Buffer.from(data), // what the store got when the write started
            done(ok: boolean) {
              w.intact = data.equals(w.object); // the buffer unchanged until the write finished
              if (ok) resolve();
              else reject(new Error('injected put failure'));
            },
          };
          writes.push(w);
        }),
    } as unknown as BlobStore;
    return { store, writes };
  }
  const settle = () => new Promise((r) => setImmediate(r));

  it('reuses a written extent buffer only after its write has finished, and every extent keeps its bytes', async () => {
    const { store, writes } = slowStore();
    const writer = new ExtentWriter(store, 100_000);
    const segments = Array.from({ length: 12 }, (_, i) => pseudoRandom(30_000, 100 + i));
    // Appends come one at a time (BlockWriter awaits each). 4 segments fill an extent (120 kB >= 100 kB).
    for (const s of segments.slice(0, 4)) await writer.append(sha256(s), s);
    expect(writes).toHaveLength(1);
    for (const s of segments.slice(4, 7)) await writer.append(sha256(s), s);
    const eighth = writer.append(sha256(segments[7]), segments[7]);
    await settle();
    expect(writes).toHaveLength(1); // the second full extent waits for the first write
    writes[0].done(true);
    await eighth;
    expect(writes).toHaveLength(2);
    // The third extent fills the first one's buffer, while the second write is still open.
    for (const s of segments.slice(8, 11)) await writer.append(sha256(s), s);
    const twelfth = writer.append(sha256(segments[11]), segments[11]);
    await settle();
    writes[1].done(true);
    await twelfth;
    const finished = writer.finish();
    await settle();
    writes[2].done(true);
    await finished;
    expect(writes).toHaveLength(3);
    expect(writes.map((w) => w.intact)).toEqual([true, true, true]);
    expect(writes[2].data.buffer).toBe(writes[0].data.buffer); // the same memory, once it was free
    expect(writes[1].data.buffer).not.toBe(writes[0].data.buffer);
    // Each extent holds its own segments, in order, and its trailer lists them.
    for (const [i, w] of writes.entries()) {
      const listed = readExtentTrailer(w.object)!;
      expect(listed.map((e) => e.hash)).toEqual(segments.slice(4 * i, 4 * i + 4).map((s) => sha256(s)));
      for (const [j, e] of listed.entries()) expect(w.object.subarray(e.offset, e.offset + e.length).equals(segments[4 * i + j])).toBe(true);
    }
  });

  it('after a failed write, refuses the next segment and writes nothing more', async () => {
    const { store, writes } = slowStore();
    const writer = new ExtentWriter(store, 50_000);
    const a = pseudoRandom(60_000, 7);
    await writer.append(sha256(a), a);
    writes[0].done(false);
    await settle();
    await expect(writer.append(sha256(a), a)).rejects.toThrow(/injected put failure/);
    expect(writes).toHaveLength(1);
  });

  it('takes memory after the upload, not the extent size: a small upload gets a small buffer', async () => {
    const { store, writes } = slowStore();
    const writer = new ExtentWriter(store, 8 << 20);
    const s = pseudoRandom(10_000, 9);
    await writer.append(sha256(s), s);
    const finished = writer.finish();
    await settle();
    writes[0].done(true);
    await finished;
    expect(writes[0].data.length).toBe(10_000 + 36 + 8);
    expect(writes[0].data.buffer.byteLength).toBeLessThanOrEqual(256 << 10);
  });
});

describe('planRuns', () => {
  const b = (hash: string, storedSize: number, extent?: string, offset?: number): BlockRef => ({ hash, size: storedSize, storedSize, crc32: 0, extent, offset });
  it('joins consecutive segments of one extent, and nothing else', () => {
    const runs = planRuns([
      b('a', 10, 'e1', 0),
      b('b', 5, 'e1', 10),
      b('c', 5, 'e1', 30), // a gap: another upload's copy sits between
      b('d', 7), // its own object
      b('e', 7), // its own object, even though the previous one was too
      b('f', 3, 'e2', 0),
      b('g', 3, 'e1', 35), // back to e1: a new run
    ]);
    expect(runs.map((r) => [r.extent, r.offset, r.bytes, r.blocks.map((x) => x.hash).join('')])).toEqual([
      ['e1', 0, 15, 'ab'],
      ['e1', 30, 5, 'c'],
      [null, 0, 7, 'd'],
      [null, 0, 7, 'e'],
      ['e2', 0, 3, 'f'],
      ['e1', 35, 3, 'g'],
    ]);
  });

  it('caps a run at 8 MiB', () => {
    const blocks = Array.from({ length: 40 }, (_, i) => b(String(i), 512 * 1024, 'e', i * 512 * 1024));
    const runs = planRuns(blocks);
    expect(runs.map((r) => r.blocks.length)).toEqual([16, 16, 8]);
  });
});
