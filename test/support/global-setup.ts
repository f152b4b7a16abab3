// vitest globalSetup: starts one S3 endpoint for the whole run (see ./s3.ts) and hands its
// address to the test workers through provide/inject. If no endpoint can be had, the reason is
// provided instead and every test that asks for S3 (s3FromInject) fails with it, while tests
// that need no S3 still run.
import type { TestProject } from 'vitest/node';
import { startS3, type S3EndpointInfo } from './s3.js';

declare module 'vitest' {
  export interface ProvidedContext {
    s3: { endpoint: string; region: string; accessKeyId: string; secretAccessKey: string };
    /** Why startS3() failed; set only when it did. */
    s3Error?: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
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
