// vitest globalSetup: starts one S3 endpoint (see ./s3.ts) and finds one PostgreSQL server
// (./postgres.ts) for the whole run, and hands their addresses to the test workers through
// provide/inject. If one cannot be had, the reason is provided instead and every test that
// asks for it (s3FromInject, pgFromInject) fails with it, while tests that need neither run.
import type { TestProject } from 'vitest/node';
import { startPostgres, type PgInfo } from './postgres.js';
import { startS3, type S3EndpointInfo } from './s3.js';

declare module 'vitest' {
  export interface ProvidedContext {
    s3: { endpoint: string; region: string; accessKeyId: string; secretAccessKey: string };
    /** Why startS3() failed; set only when it did. */
    s3Error?: string;
    pg?: PgInfo;
    /** Why no PostgreSQL could be found; set only then. */
    pgError?: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const stopPg = await setupPostgres(project);
  const stopS3 = await setupS3(project);
  return async () => {
    await stopS3();
    await stopPg();
  };
}

async function setupPostgres(project: TestProject): Promise<() => Promise<void>> {
  try {
    const server = await startPostgres();
    const { stop, ...info } = server;
    project.provide('pg', info);
    return stop;
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    console.error(`[global-setup] PostgreSQL tests will fail: ${reason}`);
    project.provide('pgError', reason);
    return async () => undefined;
  }
}

async function setupS3(project: TestProject): Promise<() => Promise<void>> {
  let ep;
  try {
    ep = await startS3();
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    console.error(`[global-setup] S3 tests will fail: ${reason}`);
    project.provide('s3Error', reason);
    return async () => undefined;
  }
  const info: S3EndpointInfo = {
    endpoint: ep.endpoint,
    region: ep.region,
    accessKeyId: ep.accessKeyId,
    secretAccessKey: ep.secretAccessKey,
  };
  project.provide('s3', info);
  return () => ep.stop();
}
