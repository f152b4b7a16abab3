// GET /health: cheap liveness of the metadata database and the blob store (no table scans).
import { Hono } from 'hono';
import { sql } from 'kysely';
import type { BlobStore } from '../blobs/blob-store.js';
import type { MetadataStore } from '../meta/metadata-store.js';

const started = Date.now();
const CHECK_TIMEOUT_MS = 5_000;

async function check(fn: (signal: AbortSignal) => Promise<unknown>): Promise<string> {
  const signal = AbortSignal.timeout(CHECK_TIMEOUT_MS);
  try {
    await Promise.race([
      fn(signal),
      new Promise((_, reject) => signal.addEventListener('abort', () => reject(new Error('timed out')), { once: true })),
    ]);
    return 'ok';
  } catch (err) {
    return `error: ${(err as Error).message}`;
  }
}

export function healthRoutes(meta: MetadataStore, blobs: BlobStore): Hono {
  const app = new Hono();
  app.get('/health', async (c) => {
    const [database, s3] = await Promise.all([
      check(() => sql`select 1`.execute(meta.db)),
      check((signal) => blobs.ping(signal)),
    ]);
    const healthy = database === 'ok' && s3 === 'ok';
    return c.json(
      // pid: which process answered (with WORKERS > 1, one of several).
      { status: healthy ? 'healthy' : 'unhealthy', uptime_seconds: Math.floor((Date.now() - started) / 1000), pid: process.pid, checks: { database, s3 } },
      healthy ? 200 : 503,
    );
  });
  return app;
}
