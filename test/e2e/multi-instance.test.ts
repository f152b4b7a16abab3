// Three server processes on one PostgreSQL database and one S3 bucket, with PostgreSQL
// advisory locks and their cleaners running every second (grace 0), hammered concurrently:
// same paths, same content, PUT/DELETE races across instances. Afterwards every reference
// count equals a recount, every referenced blob exists, and every file reads back byte-exact.
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';
import { openRuntime, type Runtime } from '../../src/runtime.js';
import { date, pseudoRandom, uid } from '../support/ft.js';
import { cleanupEnv, harnessEnv } from '../support/harness.js';
import { checkConsistency, CONSISTENT } from '../support/recount.js';
import { startServerProcess, type ServerProcess } from '../support/server-process.js';

const T0 = 1_700_000_000;
const SHARED = [0, 1, 2, 3].map((i) => pseudoRandom(80 * 1024, 500 + i));

/** The content of (path, version): shared pieces plus a tail unique to both. */
function contentFor(path: string, version: number): Buffer {
  const h = createHash('sha256').update(`${path}@${version}`).digest();
  return Buffer.concat([SHARED[h[0] % 4], SHARED[h[1] % 4], Buffer.from(`${path}@${version}\n`.repeat(50))]);
}

async function withRetry(fn: () => Promise<Response>): Promise<Response> {
  for (let attempt = 0; ; attempt++) {
    const res = await fn();
    if (res.status !== 503 || attempt > 20) return res;
    await res.arrayBuffer();
  }
}

describe('three instances on one PostgreSQL database and one bucket', () => {
  let env: Record<string, string>;
  let servers: ServerProcess[] = [];
  let rt: Runtime;

  beforeAll(async () => {
    env = await harnessEnv('s3', { CLEANER_ENABLED: 'true', CLEANER_INTERVAL: '1', CLEANER_GRACE_SECONDS: '0', CHUNK_MIN_SIZE: '4096', CHUNK_AVG_SIZE: '16384', CHUNK_MAX_SIZE: '65536' }, 'postgres');
    servers = await Promise.all([0, 1, 2].map(() => startServerProcess(env)));
  });
  afterAll(async () => {
    for (const s of servers) await s.stop();
    await rt?.close();
    if (env) await cleanupEnv(env);
  });

  it('keeps exact counts and byte-exact files under cross-instance races', { timeout: 180_000 }, async () => {
    const dir = `multi-${uid()}`;
    const paths = Array.from({ length: 6 }, (_, i) => `${dir}/f${i}`);
    const statuses = new Map<number, number>();
    const count = (s: number) => statuses.set(s, (statuses.get(s) ?? 0) + 1);

    const client = async (c: number) => {
      for (let i = 0; i < 40; i++) {
        const server = servers[(c + i) % servers.length];
        const path = paths[(c * 7 + i) % paths.length];
        const version = T0 + Math.floor(Math.random() * 20);
        const url = `${server.url}/ft/files/${path}`;
        if (i % 5 === 4) {
          const res = await withRetry(() => fetch(url, { method: 'DELETE', headers: { 'Last-Modified': date(version) } }));
          count(res.status);
          await res.arrayBuffer();
        } else {
          const body = contentFor(path, version);
          const res = await withRetry(() =>
            fetch(url, {
              method: 'PUT',
              body: new Uint8Array(gzipSync(body)),
              headers: {
                'Last-Modified': date(version),
                'Content-Encoding': 'gzip',
                'SHA256-Checksum': createHash('sha256').update(body).digest('hex'),
                'Logical-Size': String(body.length),
              },
            }),
          );
          count(res.status);
          await res.arrayBuffer();
        }
      }
    };
    await Promise.all(Array.from({ length: 9 }, (_, c) => client(c)));
    console.log('statuses', Object.fromEntries(statuses));
    expect([...statuses.keys()].every((s) => s === 200 || s === 404)).toBe(true);

    // Every file reads back, from every instance, as exactly the content of its version.
    let files = 0;
    for (const path of paths) {
      for (const server of servers) {
        const res = await fetch(`${server.url}/ft/files/${path}`);
        if (res.status === 404) continue;
        expect(res.status).toBe(200);
        const version = Math.floor(new Date(res.headers.get('last-modified')!).getTime() / 1000);
        const body = Buffer.from(await res.arrayBuffer()); // fetch decodes Content-Encoding: gzip
        expect(body.equals(contentFor(path, version)), `${path}@${version}`).toBe(true);
        files++;
      }
    }
    expect(files).toBeGreaterThan(0);

    // Let the cleaners run over the final state, then stop them and recount from scratch.
    await new Promise((r) => setTimeout(r, 2500));
    for (const s of servers) expect(await s.stop()).toBe(0);
    rt = await openRuntime(loadConfig({ env: { ...env, CLEANER_ENABLED: 'false' } }));
    expect(await checkConsistency(rt)).toEqual(CONSISTENT);
  });
});
