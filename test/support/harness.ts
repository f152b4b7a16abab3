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
import { uid } from './ft.js';
import { dropSchema, pgEnv } from './postgres.js';
import { pgFromInject, s3FromInject } from './s3-client.js';
import { createTestBucket } from './s3.js';

export type BlobKind = 'local' | 's3';
export type MetaKind = 'sqlite' | 'postgres';
export const BLOB_KINDS: BlobKind[] = ['local', 's3'];
/** Every metadata store with every blob store, as `describe.each` rows. */
export const BACKENDS: Array<{ name: string; blobs: BlobKind; meta: MetaKind }> = [
  { name: 'sqlite + local', meta: 'sqlite', blobs: 'local' },
  { name: 'sqlite + s3', meta: 'sqlite', blobs: 's3' },
  { name: 'postgres + local', meta: 'postgres', blobs: 'local' },
  { name: 'postgres + s3', meta: 'postgres', blobs: 's3' },
];

export interface Harness {
  app: Hono;
  runtime: Runtime;
  dataDir: string;
  env: Record<string, string>;
  /** rows of a table, for reference-count assertions */
  count(table: 'files' | 'contents' | 'blocks' | 'content_blocks' | 'retired_extents'): Promise<number>;
  close(): Promise<void>;
}

/**
 * Environment for a server on `kind` blobs in a fresh temp dir (and bucket), with metadata in
 * SQLite there or in a fresh PostgreSQL schema (named in env.POSTGRES_SCHEMA).
 */
export async function harnessEnv(kind: BlobKind, extra: Record<string, string> = {}, meta: MetaKind = 'sqlite'): Promise<Record<string, string>> {
  const dataDir = await mkdtemp(join(tmpdir(), 's3dedup-test-'));
  const env: Record<string, string> = { DATA_DIR: dataDir, LOG_LEVEL: 'silent', CLEANER_ENABLED: 'false' };
  if (meta === 'postgres') Object.assign(env, pgEnv(pgFromInject(), `t_${uid()}${uid()}`));
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

/** Removes what harnessEnv made: the temp dir and the PostgreSQL schema. */
export async function cleanupEnv(env: Record<string, string>): Promise<void> {
  await rm(env.DATA_DIR, { recursive: true, force: true });
  if (env.POSTGRES_SCHEMA) await dropSchema(pgFromInject(), env.POSTGRES_SCHEMA);
}

export async function makeHarness(kind: BlobKind, extra: Record<string, string> = {}, meta: MetaKind = 'sqlite'): Promise<Harness> {
  const env = await harnessEnv(kind, extra, meta);
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
      await cleanupEnv(env);
    },
  };
}
