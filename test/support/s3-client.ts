// The S3 endpoint started by global-setup.ts, as seen from inside a test.
import { inject } from 'vitest';
import type { PgInfo } from './postgres.js';
import type { S3EndpointInfo } from './s3.js';

export type InjectedS3 = S3EndpointInfo & { forcePathStyle: true };

/**
 * The run's S3 endpoint; throws (failing the test) when global setup could not start one.
 *
 * @example
 * const ep = s3FromInject();
 * const store = new S3BlobStore({ ...ep, bucket: await createTestBucket(ep) });
 */
export function s3FromInject(): InjectedS3 {
  const error = inject('s3Error');
  if (error) throw new Error(`no S3 endpoint for this test run: ${error}`);
  const s3 = inject('s3');
  if (!s3) throw new Error('no S3 endpoint provided: is test/support/global-setup.ts in vitest.config.ts globalSetup?');
  return { ...s3, forcePathStyle: true };
}

/** The run's PostgreSQL server; throws (failing the test) when global setup found none. */
export function pgFromInject(): PgInfo {
  const error = inject('pgError');
  if (error) throw new Error(`no PostgreSQL for this test run: ${error}`);
  const info = inject('pg');
  if (!info) throw new Error('no PostgreSQL provided: is test/support/global-setup.ts in vitest.config.ts globalSetup?');
  return info;
}
