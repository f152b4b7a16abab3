// When an upload reads the GC watermark its commit guard carries (docs/gc.md): before its first
// existence check, always. A streamed body reads it before its first block lookup; a small body,
// which looks nothing up before its content, reads it together with the content check in one
// query. The metadata store is the real one, wrapped to record the order of its calls.
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { moduleLogger } from '../../src/log.js';
import type { CommitGuard, MetadataStore } from '../../src/meta/metadata-store.js';
import { FileStore } from '../../src/store/file-store.js';
import { SMALL_BODY_BYTES } from '../../src/store/ingest.js';
import { sha256 } from '../support/ft.js';
import { makeHarness, type Harness } from '../support/harness.js';

const RECORDED = ['gcWatermark', 'watermarkAndContent', 'hasContent', 'findBlocks', 'commitPut'] as const;

/** `meta` with the calls named in RECORDED logged, and each commit's guard kept. */
function recording(meta: MetadataStore) {
  const calls: string[] = [];
  const guards: CommitGuard[] = [];
  const spy = new Proxy(meta, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function') return value;
      if (!(RECORDED as readonly (string | symbol)[]).includes(prop)) return value.bind(target);
      return (...args: unknown[]) => {
        calls.push(String(prop));
        if (prop === 'commitPut') guards.push(args[3] as CommitGuard);
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { spy, calls, guards };
}

describe('the upload watermark', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  async function setUp() {
    h = await makeHarness('local');
    // A collection in the log, so that the watermark is not 0.
    const { seq } = await h.runtime.meta.db
      .insertInto('gc_log')
      .values({ key: 'blocks/gone', pending: 0, created_at: Date.now() })
      .returning('seq')
      .executeTakeFirstOrThrow();
    const rec = recording(h.runtime.meta);
    const store = new FileStore(rec.spy, h.runtime.blobs, h.runtime.locks, h.runtime.config, moduleLogger('store'));
    return { ...rec, store, seq: Number(seq) };
  }

  it('is read with the content check, in one call, for a small body', async () => {
    const { store, calls, guards, seq } = await setUp();
    const content = randomBytes(3000);
    const wire = gzipSync(content);
    expect(wire.length).toBeLessThanOrEqual(SMALL_BODY_BYTES);
    await store.put({ path: 'small', version: 1, body: Readable.from([wire]), bodyLength: wire.length, gzip: true, expectedSha256: sha256(content) });
    expect(calls).toEqual(['watermarkAndContent', 'commitPut']);
    expect(guards).toEqual([{ startSeq: seq, mapWritten: true }]);
  });

  it('is read before the first block lookup for a streamed body, and the content checked alone after', async () => {
    const { store, calls, guards, seq } = await setUp();
    const content = randomBytes(3 * SMALL_BODY_BYTES + 12_345);
    await store.put({ path: 'large', version: 1, body: Readable.from([content]), bodyLength: content.length, gzip: false });
    expect(calls[0]).toBe('gcWatermark');
    expect(calls.filter((c) => c === 'gcWatermark')).toHaveLength(1);
    expect(calls.indexOf('findBlocks')).toBeGreaterThan(0);
    expect(calls.slice(-2)).toEqual(['hasContent', 'commitPut']);
    expect(calls).not.toContain('watermarkAndContent');
    expect(guards).toEqual([{ startSeq: seq, mapWritten: true }]);
  });

  it('is read once the body has arrived for a small body: a collection logged meanwhile is within it', async () => {
    const { store, guards, seq } = await setUp();
    const content = randomBytes(2000);
    const wire = gzipSync(content);
    // The body's first half now, the rest after a collection was logged.
    const body = new Readable({ read() {} });
    body.push(wire.subarray(0, 100));
    const stored = store.put({ path: 'slow', version: 1, body, bodyLength: wire.length, gzip: true });
    await new Promise((r) => setTimeout(r, 20));
    const { seq: later } = await h!.runtime.meta.db
      .insertInto('gc_log')
      .values({ key: 'blocks/gone-too', pending: 0, created_at: Date.now() })
      .returning('seq')
      .executeTakeFirstOrThrow();
    body.push(wire.subarray(100));
    body.push(null);
    await stored;
    expect(Number(later)).toBeGreaterThan(seq);
    expect(guards).toEqual([{ startSeq: Number(later), mapWritten: true }]);
  });
});
