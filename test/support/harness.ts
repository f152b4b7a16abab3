// Builds a complete runtime (config -> metadata, blob store, locks, file store, hono app) on
// a temporary data directory, with blobs on local disk or on a fresh bucket of the test S3.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Hono } from 'hono';
import { sql } from 'kysely';
import { loadConfig } from '../../src/config/config.js';
import { createApp } from '../../src/http/app.js';
import { moduleLogger } from '../../src/log.js';
import { openRuntime, type Runtime } from '../../src/runtime.js';
import { s3FromInject } from './s3-client.js';
import { createTestBucket } from './s3.js';

export type BlobKind = 'local' | 's3';
export const BLOB_KINDS: BlobKind[] = ['local', 's3'];

export interface Harness {
  app: Hono;
  runtime: Runtime;
  dataDir: string;
  env: Record<string, string>;
  /** rows of a table, for reference-count assertions */
  count(table: 'files' | 'contents' | 'blocks' | 'content_blocks'): Promise<number>;
  close(): Promise<void>;
}

/** Environment for a server on `kind` storage in a fresh temp dir (and bucket). */
export async function harnessEnv(kind: BlobKind, extra: Record<string, string> = {}): Promise<Record<string, string>> {
  const dataDir = await mkdtemp(join(tmpdir(), 's3dedup-test-'));
  const env: Record<string, string> = { DATA_DIR: dataDir, LOG_LEVEL: 'silent', CLEANER_ENABLED: 'false' };
  if (kind === 's3') {
    const s3 = s3FromInject();
    Object.assign(env, {
      S3_ENDPOINT: s3.endpoint,
      S3_ACCESS_KEY: s3.accessKeyId,
      S3_SECRET_KEY: s3.secretAccessKey,
      S3_REGION: s3.region,
      S3_FORCE_PATH_STYLE: 'true',
      BUCKET_NAME: await createTestBucket(s3, 'ft'),
    });
  }
  return { ...env, ...extra };
}

export async function makeHarness(kind: BlobKind, extra: Record<string, string> = {}): Promise<Harness> {
  const env = await harnessEnv(kind, extra);
  const runtime = await openRuntime(loadConfig({ env }));
  const app = createApp({ store: runtime.store, meta: runtime.meta, blobs: runtime.blobs, log: moduleLogger('http') });
  return {
    app,
    runtime,
    dataDir: env.DATA_DIR,
    env,
    async count(table) {
      const r = await sql<{ n: number }>`select count(*) as n from ${sql.table(table)}`.execute(runtime.meta.db);
      return Number(r.rows[0].n);
    },
    async close() {
      await runtime.close();
      await rm(env.DATA_DIR, { recursive: true, force: true });
    },
  };
}
