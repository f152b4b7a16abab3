// A server killed with SIGKILL in the middle of many uploads, on the embedded default (SQLite and
// the packed local store), with one object per block and with extents: after a restart every
// upload that was answered 200 reads back whole, the counts match a recount, every referenced
// blob is there, and the dead process's pack is sealed so compaction can reclaim it.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';
import { openRuntime } from '../../src/runtime.js';
import { date, enc, pseudoRandom, sha256, uid } from '../support/ft.js';
import { harnessEnv } from '../support/harness.js';
import { checkConsistency, CONSISTENT } from '../support/recount.js';
import { startServerProcess } from '../support/server-process.js';

const T0 = 1_700_000_000;

describe.each([
  { layout: 'one object per block', EXTENT_BYTES: '0' },
  { layout: 'extents', EXTENT_BYTES: '1048576' },
])('SIGKILL during uploads (sqlite + packed local store, $layout)', ({ EXTENT_BYTES }) => {
  const cleanups: Array<() => Promise<unknown>> = [];
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  it('leaves every acknowledged file readable and the store consistent after a restart', { timeout: 120_000 }, async () => {
    const env = await harnessEnv('local', { BLOB_STORE: 'local', CLEANER_ENABLED: 'false', EXTENT_BYTES });
    cleanups.push(() => rm(env.DATA_DIR, { recursive: true, force: true }));
    const victim = await startServerProcess(env);
    const run = uid();
    const acknowledged = new Map<string, Buffer>();
    let stop = false;
    // Eight writers, each storing small and multi-block files until the server dies under them.
    const writer = async (w: number) => {
      for (let i = 0; !stop; i++) {
        const path = `kill-${run}/${w}/${i}`;
        const body = i % 3 === 0 ? pseudoRandom(300_000, w * 1000 + i) : pseudoRandom(4096, w * 1000 + i);
        try {
          const res = await fetch(`${victim.url}/ft/files/${enc(path)}`, { method: 'PUT', headers: { 'Last-Modified': date(T0) }, body: new Uint8Array(body) });
          if (res.status === 200) acknowledged.set(path, body);
          await res.arrayBuffer();
        } catch {
          return; // the server is gone
        }
      }
    };
    const writers = Array.from({ length: 8 }, (_, w) => writer(w));
    while (acknowledged.size < 40) await new Promise((r) => setTimeout(r, 20));
    const exited = new Promise((r) => victim.child.once('exit', r));
    victim.child.kill('SIGKILL');
    stop = true;
    await Promise.all([exited, ...writers]);

    const again = await startServerProcess(env);
    try {
      for (const [path, body] of acknowledged) {
        const res = await fetch(`${again.url}/ft/files/${enc(path)}`);
        expect(res.status, path).toBe(200);
        const got = Buffer.from(await res.arrayBuffer()); // fetch undoes the Content-Encoding: gzip
        expect(sha256(got), path).toBe(sha256(body));
      }
    } finally {
      expect(await again.stop()).toBe(0);
    }

    const rt = await openRuntime(loadConfig({ env }));
    try {
      expect(await checkConsistency(rt)).toEqual(CONSISTENT);
    } finally {
      await rt.close();
    }
    // The killed process could not seal its pack; the restarted server did.
    const index = new BetterSqlite3(join(env.DATA_DIR, 'blobs', 'index.sqlite'), { readonly: true });
    try {
      expect(index.prepare('select count(*) from packs').pluck().get()).toBeGreaterThanOrEqual(1);
      expect(index.prepare('select count(*) from packs where sealed = 0').pluck().get()).toBe(0);
    } finally {
      index.close();
    }
  });
});
