import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { S3BlobStore, ensureBucket } from '../../src/blobs/s3.js';
import { BlobNotFoundError, BlobStoreError } from '../../src/errors.js';
import { createTestBucket, deleteTestBucket, freePort } from '../support/s3.js';
import { s3FromInject } from '../support/s3-client.js';
import { blobStoreContract } from './contract.js';

blobStoreContract('S3BlobStore', async () => {
  const ep = s3FromInject();
  const bucket = await createTestBucket(ep, 'blobs');
  // A tiny page size so list() crosses several ListObjectsV2 pages.
  const store = new S3BlobStore({ ...ep, bucket, listPageSize: 4 });
  return { store, cleanup: () => deleteTestBucket(ep, bucket) };
});

describe('S3BlobStore', () => {
  it('describes itself as s3://bucket', () => {
    const store = new S3BlobStore({ bucket: 'b1' });
    expect(store.describe).toBe('s3://b1');
  });

  it('fails with BlobStoreError, never not-found, when the endpoint is unreachable', async () => {
    const port = await freePort();
    const store = new S3BlobStore({
      endpoint: `http://127.0.0.1:${port}`,
      region: 'us-east-1',
      accessKeyId: 'test',
      secretAccessKey: 'test',
      forcePathStyle: true,
      bucket: 'unreachable',
      maxAttempts: 1,
    });
    try {
      for (const call of [
        () => store.get('k'),
        () => store.head('k'),
        () => store.put('k', Buffer.from('x')),
        () => store.put('k', Buffer.from('x'), { ifNoneMatch: true }),
        () => store.delete('k'),
        () => store.ping(),
        async () => {
          for await (const _ of store.list('')) void _;
        },
      ]) {
        const err = await call().then(
          () => 'resolved',
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(BlobStoreError);
        expect((err as Error).message).toMatch(/ECONNREFUSED/);
      }
    } finally {
      await store.close();
    }
  });

  it('fails with BlobStoreError, not BlobNotFoundError, when the bucket is missing', async () => {
    const ep = s3FromInject();
    const store = new S3BlobStore({ ...ep, bucket: `missing-${randomBytes(6).toString('hex')}` });
    try {
      await expect(store.ping()).rejects.toBeInstanceOf(BlobStoreError);
      const err = await store.get('k').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BlobStoreError);
      expect(err).not.toBeInstanceOf(BlobNotFoundError);
      await expect(store.put('k', Buffer.from('x'))).rejects.toBeInstanceOf(BlobStoreError);
    } finally {
      await store.close();
    }
  });

  it('creates a missing bucket, and does nothing when it exists', async () => {
    const ep = s3FromInject();
    const bucket = `created-${randomBytes(6).toString('hex')}`;
    const store = new S3BlobStore({ ...ep, bucket });
    try {
      await expect(store.ping()).rejects.toBeInstanceOf(BlobStoreError);
      await store.createBucketIfMissing();
      await ensureBucket(store);
      await Promise.all([store.createBucketIfMissing(), store.createBucketIfMissing()]);
      await store.ping();
      await store.put('k', Buffer.from('v'));
      expect((await store.get('k')).toString()).toBe('v');
    } finally {
      await store.close();
      await deleteTestBucket(ep, bucket);
    }
  });
});
