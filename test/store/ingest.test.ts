// The buffered small-body path gives the content the streaming path gives, as one whole gzip
// member (keeping a client's single member's deflate stream), and hands bodies it cannot take
// (long, or inflating past one block) to the stream.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { crc32, gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalBlobStore } from '../../src/blobs/local.js';
import { MetadataStore } from '../../src/meta/metadata-store.js';
import { migrateToLatest } from '../../src/meta/migrate.js';
import { openSqlite } from '../../src/meta/sqlite.js';
import { DEFAULT_CHUNKER } from '../../src/store/chunker.js';
import { ingest, ingestBody, SMALL_BODY_BYTES, type IngestOptions } from '../../src/store/ingest.js';
import { readSingleMember } from '../../src/store/small-member.js';
import { pseudoRandom, sha256 } from '../support/ft.js';

describe('ingestBody', () => {
  let dir: string;
  let o: Omit<IngestOptions, 'gzip'>;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 's3dedup-ingest-'));
    const db = openSqlite(':memory:');
    await migrateToLatest(db);
    o = { chunker: DEFAULT_CHUNKER, concurrency: 4, compressionLevel: 6, extentBytes: 0, blobs: new LocalBlobStore({ root: dir }), meta: new MetadataStore(db) };
  });
  afterAll(async () => {
    await o.meta.close();
    await rm(dir, { recursive: true, force: true });
  });

  const shape = (r: Awaited<ReturnType<typeof ingest>>) => ({ hash: r.hash, size: r.logicalSize, crc: r.crc32 });

  it.each([
    ['4 KiB text', Buffer.from('line of text\n'.repeat(315))],
    ['random, exactly the chunker minimum', pseudoRandom(DEFAULT_CHUNKER.minSize, 3)],
  ])('gives the content of the streaming path for %s content as one whole member, plain and gzip', async (_name, content) => {
    for (const gzip of [false, true]) {
      const wire = gzip ? gzipSync(content, { level: 9 }) : content;
      expect(wire.length).toBeLessThanOrEqual(SMALL_BODY_BYTES);
      const fast = await ingestBody(Readable.from([wire]), wire.length, { ...o, gzip });
      const streamed = await ingest(Readable.from([wire]), { ...o, gzip });
      expect(shape(fast)).toEqual(shape(streamed));
      expect(fast.hash).toBe(sha256(content));
      expect(fast.blocks).toEqual([]);
      expect(fast.written).toBe(0); // the caller writes the member
      const member = fast.member!;
      expect(fast.storedSize).toBe(member.length);
      expect(gunzipSync(member).equals(content)).toBe(true);
      // The client's deflate stream is kept byte for byte: nothing was compressed again.
      if (gzip) expect(member.subarray(10).equals(wire.subarray(10))).toBe(true);
    }
  });

  it('gives an empty content no blocks and no member, as the streaming path', async () => {
    for (const gzip of [false, true]) {
      const wire = gzip ? gzipSync(Buffer.alloc(0)) : Buffer.alloc(0);
      const fast = await ingestBody(Readable.from([wire]), wire.length, { ...o, gzip });
      const streamed = await ingest(Readable.from([wire]), { ...o, gzip });
      expect({ ...shape(fast), stored: fast.storedSize, blocks: fast.blocks }).toEqual({ ...shape(streamed), stored: streamed.storedSize, blocks: streamed.blocks });
      expect(fast.member).toBeUndefined();
    }
  });

  it('re-encodes a gzip body of two members into one, with the whole content', async () => {
    const a = Buffer.from('first part\n'.repeat(100));
    const b = Buffer.from('second part\n'.repeat(100));
    const wire = Buffer.concat([gzipSync(a), gzipSync(b)]);
    const r = await ingestBody(Readable.from([wire]), wire.length, { ...o, gzip: true });
    expect(r.hash).toBe(sha256(Buffer.concat([a, b])));
    expect(gunzipSync(r.member!).equals(Buffer.concat([a, b]))).toBe(true);
    expect(readSingleMember(r.member!, 1 << 20)).not.toBeNull(); // one member, not the two sent
  });

  it('streams a small gzip body that inflates past one block (no buffering of the inflated content)', async () => {
    const content = Buffer.alloc(8 << 20, 'a'); // 8 MiB of one byte: a few KiB of gzip
    const wire = gzipSync(content);
    expect(wire.length).toBeLessThan(SMALL_BODY_BYTES);
    const r = await ingestBody(Readable.from([wire]), wire.length, { ...o, gzip: true });
    expect(r.logicalSize).toBe(content.length);
    expect(r.hash).toBe(sha256(content));
    expect(r.blocks.length).toBeGreaterThan(1);
  });

  it('hashes blocks in parallel yet registers them in content order, each distinct block written once', async () => {
    // The same 1 MiB of random bytes three times over: after the first copy FastCDC finds the
    // same cut points again, so most blocks repeat within the one upload.
    const unit = pseudoRandom(1 << 20, 11);
    const content = Buffer.concat([unit, unit, unit, pseudoRandom(300_000, 12)]);
    const result = await ingest(Readable.from([content]), { ...o, gzip: false });
    expect(result.hash).toBe(sha256(content));
    const distinct = new Set(result.blocks.map((b) => b.hash));
    expect(distinct.size).toBeLessThan(result.blocks.length * 0.6);
    expect(result.written).toBe(distinct.size);
    // Each block names its own bytes, in order, with their CRC-32.
    let at = 0;
    for (const b of result.blocks) {
      const bytes = content.subarray(at, at + b.size);
      expect(b.hash).toBe(sha256(bytes));
      expect(b.crc32).toBe(crc32(bytes));
      expect(b.storedSize).toBeGreaterThan(0);
      at += b.size;
    }
    expect(at).toBe(content.length);
  });

  it('rejects invalid gzip and a body shorter than its Content-Length', async () => {
    await expect(ingestBody(Readable.from([Buffer.from('not gzip')]), 8, { ...o, gzip: true })).rejects.toMatchObject({ code: 'BAD_BODY' });
    await expect(ingestBody(Readable.from([Buffer.from('short')]), 10, { ...o, gzip: false })).rejects.toMatchObject({ code: 'CLIENT_ABORTED' });
  });
});
