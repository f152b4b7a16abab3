// Faults of the backends answer 5xx with a reason, never "not found", and store nothing.
// The faults are injected: an S3 endpoint on a closed port, a destroyed database handle, and
// one failing extent PUT (no real service can be told to fail on demand mid-test).
import { randomBytes } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import type { BlobStore, PutOptions } from '../../src/blobs/blob-store.js';
import { S3BlobStore } from '../../src/blobs/s3.js';
import { BlobStoreError } from '../../src/errors.js';
import { createApp } from '../../src/http/app.js';
import { moduleLogger } from '../../src/log.js';
import { FileStore, DEFAULT_FILE_STORE_OPTIONS } from '../../src/store/file-store.js';
import { DEFAULT_CHUNKER } from '../../src/store/chunker.js';
import { EXTENT_PREFIX } from '../../src/store/keys.js';
import { freePort } from '../support/s3.js';
import { del, put, uid } from '../support/ft.js';
import { BACKENDS, makeHarness, type Harness } from '../support/harness.js';
import { listKeys } from '../support/store-io.js';

const T0 = 1_700_000_000;

describe.each(BACKENDS.filter((b) => b.blobs === 'local'))('backend faults on $name', ({ blobs, meta }) => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close().catch(() => {});
    h = undefined;
  });

  it('S3 unreachable: PUT and GET answer 500 with a reason, health 503, no metadata written', async () => {
    h = await makeHarness(blobs, {}, meta);
    const path = `s3down-${uid()}`;
    expect((await put(h.app, path, Buffer.from('before'), T0)).status).toBe(200);
    const deadS3 = new S3BlobStore({
      bucket: 'nowhere',
      endpoint: `http://127.0.0.1:${await freePort()}`,
      region: 'us-east-1',
      accessKeyId: 'x',
      secretAccessKey: 'x',
      forcePathStyle: true,
      maxAttempts: 1,
    });
    const store = new FileStore(h.runtime.meta, deadS3, h.runtime.locks, { ...DEFAULT_FILE_STORE_OPTIONS, chunker: DEFAULT_CHUNKER, blockCacheBytes: 0 }, moduleLogger('store'));
    const app = createApp({ store, meta: h.runtime.meta, blobs: deadS3, log: moduleLogger('http') });
    const files = await h.count('files');

    const putRes = await put(app, `${path}-new`, Buffer.from('new content'), T0);
    expect(putRes.status).toBe(500);
    expect(putRes.headers.get('x-exception')).toMatch(/internal error/);
    expect(await h.count('files')).toBe(files);

    const getRes = await app.request(`/ft/files/${path}`);
    expect(getRes.status).not.toBe(404);
    expect(getRes.status).toBeGreaterThanOrEqual(500);
    const health = await app.request('/health');
    expect(health.status).toBe(503);
    expect((await health.json()).checks.s3).toMatch(/^error/);
    await deadS3.close();
  });

  it('database gone: requests answer 500 with a reason, never 404', async () => {
    h = await makeHarness(blobs, {}, meta);
    const path = `dbdown-${uid()}`;
    expect((await put(h.app, path, Buffer.from('x'), T0)).status).toBe(200);
    await h.runtime.meta.db.destroy();
    const get = await h.app.request(`/ft/files/${path}`);
    expect(get.status).toBe(500);
    expect(get.headers.get('x-exception')).toMatch(/internal error/);
    expect((await h.app.request(`/ft/files/${path}`, { method: 'HEAD' })).status).toBe(500);
    expect((await del(h.app, path, T0 + 1)).status).toBe(500);
    expect((await h.app.request('/ft/list/')).status).toBeGreaterThanOrEqual(500);
    const health = await h.app.request('/health');
    expect(health.status).toBe(503);
    expect((await health.json()).checks.database).toMatch(/^error/);
  });
});

describe.each(BACKENDS.filter((b) => b.blobs === 's3'))('an extent write failing mid-upload on $name', ({ blobs, meta }) => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close().catch(() => {});
    h = undefined;
  });

  it('answers 500, commits nothing, and leaves only unnamed extents that the full scan removes', async () => {
    h = await makeHarness(blobs, { ...SMALL_EXTENTS, CLEANER_GRACE_SECONDS: '0' }, meta);
    const real = h.runtime.blobs;
    // Injected: the second extent PUT of the upload fails (S3 cannot be told to fail one request).
    let extentPuts = 0;
    const failing: BlobStore = Object.create(real, {
      put: {
        value: async (key: string, data: Buffer, o?: PutOptions) => {
          if (key.startsWith(EXTENT_PREFIX) && ++extentPuts === 2) throw new BlobStoreError('injected: extent PUT failed');
          return real.put(key, data, o);
        },
      },
    });
    const store = new FileStore(h.runtime.meta, failing, h.runtime.locks, h.runtime.config, moduleLogger('store'));
    const app = createApp({ store, meta: h.runtime.meta, blobs: failing, log: moduleLogger('http') });
    const tables = ['files', 'contents', 'blocks', 'content_blocks'] as const;
    const before = await Promise.all(tables.map((t) => h!.count(t)));
    const data = randomBytes(600 * 1024);

    const res = await put(app, `extent-fault-${uid()}`, data, T0);
    expect(res.status).toBe(500);
    expect(extentPuts).toBeGreaterThanOrEqual(2);
    expect(await Promise.all(tables.map((t) => h!.count(t)))).toEqual(before);
    const left = await listKeys(real, EXTENT_PREFIX);
    expect(left.length).toBeGreaterThanOrEqual(1); // the first extent was written

    const report = await h.runtime.cleaner.run({ fullScan: true });
    expect(report.orphans).toBe(left.length);
    expect(await listKeys(real, EXTENT_PREFIX)).toEqual([]);
    // The same upload through the real store then succeeds and reads back.
    const path = `extent-retry-${uid()}`;
    expect((await put(h.app, path, data, T0)).status).toBe(200);
    const got = await h.app.request(`/ft/files/${path}`);
    expect(gunzipSync(Buffer.from(await got.arrayBuffer())).equals(data)).toBe(true);
  });
});

const SMALL_EXTENTS = { CHUNK_MIN_SIZE: '4096', CHUNK_AVG_SIZE: '16384', CHUNK_MAX_SIZE: '65536', EXTENT_BYTES: '131072' };

