// The behaviour every BlobStore must have; run by each implementation's test file.
import { createHash, randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { BlobInfo, BlobStore } from '../../src/blobs/blob-store.js';
import { BlobExistsError, BlobNotFoundError, BlobStoreError } from '../../src/errors.js';

export interface StoreFixture {
  store: BlobStore;
  cleanup(): Promise<void>;
}

/** A content-hash key, the shape the dedup layer uses (`blocks/<sha256>`). */
export function hashKey(dir: string, data: Buffer | string): string {
  return `${dir}/${createHash('sha256').update(data).digest('hex')}`;
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const info of it) out.push(info);
  return out;
}

/**
 * Runs the shared BlobStore suite; make() gives a fresh, empty store for each test.
 *
 * @example
 * blobStoreContract('LocalBlobStore', async () => ({ store, cleanup: () => rm(dir) }));
 */
export function blobStoreContract(name: string, make: () => Promise<StoreFixture>): void {
  describe(`BlobStore contract: ${name}`, () => {
    let fx: StoreFixture | undefined;
    let store: BlobStore;

    beforeEach(async () => {
      fx = await make();
      store = fx.store;
    });
    afterEach(async () => {
      // make() may have failed (no S3 endpoint); its error is the one to report.
      if (!fx) return;
      const done = fx;
      fx = undefined;
      await done.store.close();
      await done.cleanup();
    });

    it('describes itself', () => {
      expect(typeof store.describe).toBe('string');
      expect(store.describe.length).toBeGreaterThan(0);
    });

    it('round-trips small, empty and 1 MiB objects', async () => {
      const small = Buffer.from('hello, blobs\n');
      const empty = Buffer.alloc(0);
      const big = randomBytes(1_048_576 + 17);
      const allBytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
      await store.put('rt/small', small);
      await store.put('rt/empty', empty);
      await store.put(hashKey('rt', big), big);
      await store.put('rt/all-bytes', allBytes);

      expect(await store.get('rt/small')).toEqual(small);
      expect((await store.get('rt/empty')).length).toBe(0);
      expect((await store.get(hashKey('rt', big))).equals(big)).toBe(true);
      expect(await store.get('rt/all-bytes')).toEqual(allBytes);

      const head = await store.head(hashKey('rt', big));
      expect(head?.key).toBe(hashKey('rt', big));
      expect(head?.size).toBe(big.length);
      expect(head?.lastModified).toBeInstanceOf(Date);
      expect(Math.abs((head?.lastModified.getTime() ?? 0) - Date.now())).toBeLessThan(10 * 60_000);
      expect((await store.head('rt/empty'))?.size).toBe(0);
    });

    it('returns a Buffer from get', async () => {
      await store.put('rt/x', Buffer.from('x'));
      expect(Buffer.isBuffer(await store.get('rt/x'))).toBe(true);
    });

    it('handles top-level keys and keys with unusual characters', async () => {
      const keys = ['s3dedup.json', 'odd/with space+plus=eq,comma(1)~.txt', 'odd/.dotfile', 'a/b/c/d/e/deep'];
      for (const key of keys) await store.put(key, Buffer.from(key));
      for (const key of keys) expect((await store.get(key)).toString()).toBe(key);
      expect((await collect(store.list(''))).map((i) => i.key)).toEqual([...keys].sort());
    });

    it('overwrites an existing key', async () => {
      await store.put('ow/k', Buffer.from('first version'));
      await store.put('ow/k', Buffer.from('second'));
      expect((await store.get('ow/k')).toString()).toBe('second');
      expect((await store.head('ow/k'))?.size).toBe(6);
    });

    it('reads byte ranges, and refuses a range past the end or of a missing key', async () => {
      const data = randomBytes(300_000);
      await store.put('range/obj', data);
      expect((await store.getRange('range/obj', 0, 10)).equals(data.subarray(0, 10))).toBe(true);
      expect((await store.getRange('range/obj', 123_457, 70_001)).equals(data.subarray(123_457, 193_458))).toBe(true);
      expect((await store.getRange('range/obj', 299_999, 1)).equals(data.subarray(299_999))).toBe(true);
      expect((await store.getRange('range/obj', 5, 0)).length).toBe(0);
      await expect(store.getRange('range/obj', 299_990, 11)).rejects.toBeInstanceOf(BlobStoreError);
      await expect(store.getRange('range/missing', 0, 1)).rejects.toBeInstanceOf(BlobNotFoundError);
      if (store.rangePieces) {
        const pieces = (offset: number, length: number) => collect(store.rangePieces!('range/obj', offset, length));
        expect(Buffer.concat(await pieces(1000, 250_000)).equals(data.subarray(1000, 251_000))).toBe(true);
        expect(await pieces(7, 0)).toEqual([]);
        await expect(pieces(299_990, 11)).rejects.toBeInstanceOf(BlobStoreError);
        await expect(collect(store.rangePieces('range/missing', 0, 1))).rejects.toBeInstanceOf(BlobNotFoundError);
      }
    });

    it('reports a missing key as BlobNotFoundError from get and null from head', async () => {
      const err = await store.get('missing/nothing-here').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BlobNotFoundError);
      expect((err as BlobNotFoundError).key).toBe('missing/nothing-here');
      expect(await store.head('missing/nothing-here')).toBeNull();
      await expect(store.get(hashKey('missing', 'x'))).rejects.toBeInstanceOf(BlobNotFoundError);
      expect(await store.head(hashKey('missing', 'x'))).toBeNull();
    });

    it('treats a key that is only a prefix of others as missing', async () => {
      await store.put('dir/inner/file', Buffer.from('x'));
      await expect(store.get('dir/inner')).rejects.toBeInstanceOf(BlobNotFoundError);
      expect(await store.head('dir/inner')).toBeNull();
      await store.delete('dir/inner');
      expect((await store.get('dir/inner/file')).toString()).toBe('x');
    });

    it('deletes, and deleting an absent key is not an error', async () => {
      const key = hashKey('del', 'payload');
      await store.put(key, Buffer.from('payload'));
      await store.delete(key);
      await expect(store.get(key)).rejects.toBeInstanceOf(BlobNotFoundError);
      expect(await store.head(key)).toBeNull();
      await store.delete(key);
      await store.delete('del/never-existed');
      await store.delete('never/existed/either');
    });

    it('ifNoneMatch creates once, then fails with BlobExistsError and keeps the original', async () => {
      const key = hashKey('inm', 'original');
      await store.put(key, Buffer.from('original'), { ifNoneMatch: true });
      const err = await store.put(key, Buffer.from('intruder'), { ifNoneMatch: true }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BlobExistsError);
      expect((err as BlobExistsError).key).toBe(key);
      expect((await store.get(key)).toString()).toBe('original');

      await store.put('inm/plain', Buffer.from('a'));
      await expect(store.put('inm/plain', Buffer.from('b'), { ifNoneMatch: true })).rejects.toBeInstanceOf(
        BlobExistsError,
      );
      expect((await store.get('inm/plain')).toString()).toBe('a');

      await store.delete(key);
      await store.put(key, Buffer.from('again'), { ifNoneMatch: true });
      expect((await store.get(key)).toString()).toBe('again');
    });

    it('lets exactly one of many concurrent ifNoneMatch creates win', async () => {
      for (let round = 0; round < 5; round++) {
        const key = `race/${round}-${randomBytes(4).toString('hex')}`;
        const bodies = Array.from({ length: 8 }, (_, i) => Buffer.from(`writer ${i} `.repeat(1000 * (i + 1))));
        const results = await Promise.allSettled(bodies.map((b) => store.put(key, b, { ifNoneMatch: true })));
        const winners = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
        expect(winners).toHaveLength(1);
        for (const r of results) {
          if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(BlobExistsError);
        }
        expect((await store.get(key)).equals(bodies[winners[0]])).toBe(true);
      }
    });

    it('lists by prefix in key order with sizes', async () => {
      const hashes = Array.from({ length: 12 }, (_, i) => hashKey('blocks', `block ${i}`));
      // Hash-like and plain names side by side, sharing leading characters with each other.
      const firstHash = hashes[0].slice('blocks/'.length);
      const plain = [
        `blocks/${firstHash.slice(0, 3)}`,
        `blocks/${firstHash.slice(0, 2)}-note`,
        `blocks/${firstHash.slice(0, 2)}z`,
        'blocks/sub/one',
        'blocks/sub-file',
        'blocks/sub0',
        'blocks-sibling',
        'blocksz/x',
        'maps/m1',
        'other',
      ];
      const sizes = new Map<string, number>();
      for (const [i, key] of [...hashes, ...plain].entries()) {
        const data = randomBytes(i * 7);
        sizes.set(key, data.length);
        await store.put(key, data);
      }

      const all = await collect(store.list(''));
      expect(all.map((i) => i.key)).toEqual([...sizes.keys()].sort());
      for (const info of all) {
        expect(info.size).toBe(sizes.get(info.key));
        expect(info.lastModified).toBeInstanceOf(Date);
      }

      const expectPrefix = async (prefix: string): Promise<void> => {
        const got = (await collect(store.list(prefix))).map((i) => i.key);
        const want = [...sizes.keys()].filter((k) => k.startsWith(prefix)).sort();
        expect(got, `list(${JSON.stringify(prefix)})`).toEqual(want);
      };
      await expectPrefix('blocks/');
      await expectPrefix('blocks');
      await expectPrefix('blocks/sub');
      await expectPrefix('blocks/sub/');
      await expectPrefix(`blocks/${firstHash.slice(0, 1)}`);
      await expectPrefix(`blocks/${firstHash.slice(0, 2)}`);
      await expectPrefix(`blocks/${firstHash.slice(0, 3)}`);
      await expectPrefix(hashes[5]);
      await expectPrefix('maps/');
      await expectPrefix('nothing/');
      await expectPrefix('zzz');
    });

    it('lists many keys (across S3 pages) in order', async () => {
      const keys = Array.from({ length: 25 }, (_, i) => `many/${String(i).padStart(3, '0')}`);
      await Promise.all(keys.map((k) => store.put(k, Buffer.from(k))));
      const got = await collect(store.list('many/'));
      expect(got.map((i) => i.key)).toEqual(keys);
      expect(got.every((i) => i.size === 8)).toBe(true);
    });

    it('does not list deleted keys', async () => {
      await store.put('gone/a', Buffer.from('a'));
      await store.put('gone/b', Buffer.from('b'));
      await store.delete('gone/a');
      expect((await collect(store.list('gone/'))).map((i) => i.key)).toEqual(['gone/b']);
    });

    it('pings', async () => {
      await store.ping();
    });

    it('writes nothing when the put signal is already aborted', async () => {
      const ac = new AbortController();
      ac.abort(new Error('client went away'));
      await expect(store.put('abort/k', Buffer.from('x'), { signal: ac.signal })).rejects.toThrow();
      expect(await store.head('abort/k')).toBeNull();
      expect(await collect(store.list('abort/'))).toEqual([]);
    });

    it('rejects a get with an aborted signal without calling it missing', async () => {
      await store.put('abort/present', Buffer.from('x'));
      const ac = new AbortController();
      ac.abort();
      const err = await store.get('abort/present', ac.signal).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      expect(err).not.toBeInstanceOf(BlobNotFoundError);
    });
  });
}
