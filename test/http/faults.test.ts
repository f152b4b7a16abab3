// Faults of the backends answer 5xx with a reason, never "not found", and store nothing.
// The faults are injected: an S3 endpoint on a closed port, and a destroyed database handle
// (neither real service can be told to fail on demand mid-test).
import { afterEach, describe, expect, it } from 'vitest';
import { S3BlobStore } from '../../src/blobs/s3.js';
import { createApp } from '../../src/http/app.js';
import { moduleLogger } from '../../src/log.js';
import { FileStore, DEFAULT_FILE_STORE_OPTIONS } from '../../src/store/file-store.js';
import { DEFAULT_CHUNKER } from '../../src/store/chunker.js';
import { freePort } from '../support/s3.js';
import { del, put, uid } from '../support/ft.js';
import { BACKENDS, makeHarness, type Harness } from '../support/harness.js';

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
