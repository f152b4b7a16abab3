import { mkdtemp, readdir, rm, stat, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LocalBlobStore } from '../../src/blobs/local.js';
import { BlobExistsError, BlobStoreError } from '../../src/errors.js';
import { blobStoreContract, hashKey } from './contract.js';

async function tempRoot(): Promise<string> {
  return mkdtemp(join(tmpdir(), 's3dedup-local-'));
}

blobStoreContract('LocalBlobStore', async () => {
  const dir = await tempRoot();
  // A root that does not exist yet: the first put creates it.
  const store = new LocalBlobStore({ root: join(dir, 'blobs') });
  await store.put('.keep', Buffer.alloc(0));
  await store.delete('.keep');
  return { store, cleanup: () => rm(dir, { recursive: true, force: true }) };
});

blobStoreContract('LocalBlobStore (fsync)', async () => {
  const dir = await tempRoot();
  const store = new LocalBlobStore({ root: dir, fsync: true });
  return { store, cleanup: () => rm(dir, { recursive: true, force: true }) };
});

async function tmpFiles(dir: string): Promise<string[]> {
  const names = await readdir(dir, { recursive: true });
  return names.filter((n) => n.split('/').some((s) => s.startsWith('.tmp-')));
}

describe('LocalBlobStore', () => {
  let dir: string;
  let store: LocalBlobStore;

  beforeEach(async () => {
    dir = await tempRoot();
    store = new LocalBlobStore({ root: dir });
  });
  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('describes itself as a file URL', () => {
    expect(store.describe).toBe(`file://${dir}`);
  });

  it('rejects keys that could escape the root or clash with its own files', async () => {
    const bad = ['', '/abs', '../up', 'a/../b', 'a//b', 'a/', './a', 'a/./b', 'x/.tmp-123', 'blocks/ab', 'ff/x', 'a\0b'];
    for (const key of bad) {
      await expect(store.put(key, Buffer.from('x')), key).rejects.toThrow(/invalid blob key/);
      await expect(store.get(key), key).rejects.toThrow(/invalid blob key/);
      await expect(store.head(key), key).rejects.toThrow(/invalid blob key/);
      await expect(store.delete(key), key).rejects.toThrow(/invalid blob key/);
    }
    const list = async (prefix: string): Promise<void> => {
      for await (const _ of store.list(prefix)) void _;
    };
    await expect(list('../')).rejects.toThrow(/invalid blob key/);
    await expect(list('/abs')).rejects.toThrow(/invalid blob key/);
    expect(await readdir(dir)).toEqual([]);
  });

  it('fans hash-named keys out by their first two hex digits', async () => {
    const key = hashKey('blocks', 'data');
    const name = key.slice('blocks/'.length);
    await store.put(key, Buffer.from('data'));
    expect((await stat(join(dir, 'blocks', name.slice(0, 2), name))).size).toBe(4);
    await store.put('s3dedup.json', Buffer.from('{}'));
    expect((await stat(join(dir, 's3dedup.json'))).size).toBe(2);
  });

  it('leaves no temp files behind, also when a conditional create loses', async () => {
    const key = hashKey('blocks', 'x');
    await store.put(key, Buffer.from('x'), { ifNoneMatch: true });
    await expect(store.put(key, Buffer.from('y'), { ifNoneMatch: true })).rejects.toBeInstanceOf(BlobExistsError);
    await store.put('plain/k', Buffer.from('1'));
    await store.put('plain/k', Buffer.from('2'));
    const ac = new AbortController();
    ac.abort();
    await expect(store.put('plain/aborted', Buffer.from('z'), { signal: ac.signal })).rejects.toThrow();
    expect(await tmpFiles(dir)).toEqual([]);
  });

  it('skips temp files and stray entries when listing', async () => {
    await store.put('blocks/' + 'a'.repeat(64), Buffer.from('a'));
    await store.put('x/y', Buffer.from('b'));
    await writeFile(join(dir, 'x', '.tmp-deadbeef'), 'partial');
    await writeFile(join(dir, 'blocks', 'aa', '.tmp-cafe'), 'partial');
    // A hash-named file outside its fan-out directory cannot be read by get(), so is not listed.
    await writeFile(join(dir, 'blocks', 'b'.repeat(64)), 'stray');
    const keys: string[] = [];
    for await (const info of store.list('')) keys.push(info.key);
    expect(keys).toEqual(['blocks/' + 'a'.repeat(64), 'x/y']);
  });

  it('recreates a directory removed behind its back', async () => {
    await store.put('d/one', Buffer.from('1'));
    await rm(join(dir, 'd'), { recursive: true });
    await store.put('d/two', Buffer.from('2'));
    expect((await store.get('d/two')).toString()).toBe('2');
  });

  it('fails with BlobStoreError when a path component is a file', async () => {
    await store.put('f', Buffer.from('file'));
    await expect(store.put('f/g', Buffer.from('x'))).rejects.toBeInstanceOf(BlobStoreError);
  });

  it('pings only a directory that exists', async () => {
    await store.ping();
    await expect(new LocalBlobStore({ root: join(dir, 'absent') }).ping()).rejects.toBeInstanceOf(BlobStoreError);
    await writeFile(join(dir, 'file'), 'x');
    await expect(new LocalBlobStore({ root: join(dir, 'file') }).ping()).rejects.toBeInstanceOf(BlobStoreError);
    await mkdir(join(dir, 'sub'));
    await new LocalBlobStore({ root: join(dir, 'sub') }).ping();
  });

  it('lists nothing under an absent root', async () => {
    const absent = new LocalBlobStore({ root: join(dir, 'absent') });
    const keys: string[] = [];
    for await (const info of absent.list('')) keys.push(info.key);
    expect(keys).toEqual([]);
  });
});
