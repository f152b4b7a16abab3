// WORKERS=2 on the embedded default (SQLite + local disk), as a user runs it: both workers
// serve, racing writers across processes leave the right version and consistent counts,
// /metrics sums over the workers, a killed worker is replaced, and SIGTERM stops them all.
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { workerEnv, workerExecArgv } from '../../src/cluster.js';
import { loadConfig } from '../../src/config/config.js';
import { SERVER_NODE_FLAGS, WORKER_NODE_FLAGS } from '../../src/node-flags.js';
import { openRuntime } from '../../src/runtime.js';
import { date, uid } from '../support/ft.js';
import { checkConsistency, CONSISTENT } from '../support/recount.js';
import { startServerProcess, type ServerProcess } from '../support/server-process.js';

const T0 = 1_700_000_000;

/** Pids of the primary's worker processes. */
function workerPids(primary: number): number[] {
  const text = readFileSync(`/proc/${primary}/task/${primary}/children`, 'utf8').trim();
  return text === '' ? [] : text.split(/\s+/).map(Number);
}

/** A request on a connection of its own, so the cluster hands it to the next worker. */
function fresh(url: string, init: RequestInit = {}): Promise<Response> {
  return fetch(url, { ...init, headers: { ...(init.headers as Record<string, string>), connection: 'close' } });
}

async function getCounter(url: string, method: string, route: string): Promise<number> {
  const text = await (await fresh(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`http_requests_total{method="${method}",route="${route}",status="200"}`));
  return line ? Number(line.split(' ').pop()) : 0;
}

describe('server with WORKERS=2', () => {
  let dir: string;
  let env: Record<string, string>;
  let server: ServerProcess;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 's3dedup-workers-'));
    env = { DATA_DIR: dir, WORKERS: '2', BLOB_STORE: 'local', KVSTORAGE_TYPE: 'sqlite' };
    server = await startServerProcess(env);
  }, 90_000);
  afterAll(async () => {
    await server?.stop('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs two worker processes, and both answer requests', async () => {
    expect(workerPids(server.child.pid!)).toHaveLength(2);
    const pids = new Set<number>();
    // Worker 0 serves as soon as it listens; worker 1 starts after it (it finds the migrations done).
    for (let i = 0; i < 200 && pids.size < 2; i++) {
      pids.add(((await (await fresh(`${server.url}/health`)).json()) as { pid: number }).pid);
      if (pids.size < 2) await new Promise((r) => setTimeout(r, 50));
    }
    expect([...pids].sort()).toEqual(workerPids(server.child.pid!).sort());
  });

  it('starts the workers with a small young generation and a heap limit under 2 GiB', () => {
    for (const pid of workerPids(server.child.pid!)) {
      const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      expect(args).toContain('--max-semi-space-size=4');
      expect(args).toContain('--max-old-space-size=2047');
    }
  });

  it("starts the workers with glibc's fixed malloc threshold (or the one this environment sets)", () => {
    const expected = `MALLOC_MMAP_THRESHOLD_=${process.env.MALLOC_MMAP_THRESHOLD_ ?? 131072}`;
    for (const pid of workerPids(server.child.pid!)) {
      expect(readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')).toContain(expected);
    }
  });

  it('racing writers on both workers leave the newest version of each path and exact counts', async () => {
    const dirName = `race-${uid()}`;
    const paths = [0, 1, 2, 3].map((i) => `${dirName}/f${i}`);
    const body = (path: string, v: number) => Buffer.from(`${path} at version ${v}\n`.repeat(50 + v));
    const ops: Promise<Response>[] = [];
    for (let v = 0; v < 12; v++) {
      for (const p of paths) {
        ops.push(fresh(`${server.url}/ft/files/${p}?last_modified=${encodeURIComponent(date(T0 + v))}`, { method: 'PUT', body: body(p, v) }));
        if (v % 3 === 2) ops.push(fresh(`${server.url}/ft/files/${p}?last_modified=${encodeURIComponent(date(T0 + v - 1))}`, { method: 'DELETE' }));
      }
    }
    const statuses = (await Promise.all(ops)).map((r) => r.status);
    // A delete older than the version standing is ignored (200); one of a path absent is 404.
    expect(statuses.filter((s) => s !== 200 && s !== 404)).toEqual([]);
    for (const p of paths) {
      const res = await fresh(`${server.url}/ft/files/${p}`);
      expect(res.status).toBe(200);
      // fetch undoes the Content-Encoding: gzip itself.
      expect(Buffer.from(await res.arrayBuffer()).equals(body(p, 11))).toBe(true);
    }
  });

  it('a file cached by both workers is read at its new version once either worker replaced or deleted it', async () => {
    const path = `cached-${uid()}`;
    const url = `${server.url}/ft/files/${path}`;
    const put = (v: number) => fresh(`${url}?last_modified=${encodeURIComponent(date(T0 + v))}`, { method: 'PUT', body: `version ${v}` });
    const readOnce = async () => {
      const res = await fresh(url);
      return res.status === 200 ? await res.text() : res.status;
    };
    const readAll = (n: number) => Promise.all(Array.from({ length: n }, readOnce));
    expect((await put(1)).status).toBe(200);
    expect(new Set(await readAll(10))).toEqual(new Set(['version 1'])); // both workers have it cached now
    for (let v = 2; v <= 4; v++) {
      expect((await put(v)).status).toBe(200);
      expect(new Set(await readAll(10))).toEqual(new Set([`version ${v}`]));
    }
    expect((await fresh(`${url}?last_modified=${encodeURIComponent(date(T0 + 5))}`, { method: 'DELETE' })).status).toBe(200);
    expect(new Set(await readAll(10))).toEqual(new Set([404]));
  });

  it('/metrics counts the requests of every worker', async () => {
    const path = `m-${uid()}`;
    expect((await fresh(`${server.url}/ft/files/${path}?last_modified=${encodeURIComponent(date(T0))}`, { method: 'PUT', body: 'x' })).status).toBe(200);
    const before = await getCounter(server.url, 'HEAD', '/ft/files/*');
    for (let i = 0; i < 10; i++) expect((await fresh(`${server.url}/ft/files/${path}`, { method: 'HEAD' })).status).toBe(200);
    expect((await getCounter(server.url, 'HEAD', '/ft/files/*')) - before).toBe(10);
  });

  it('replaces a worker that dies, and keeps serving meanwhile', async () => {
    const [victim, survivor] = workerPids(server.child.pid!);
    process.kill(victim, 'SIGKILL');
    // A connection handed to the victim as it died is lost; the next ones go to the survivor.
    let served = false;
    for (let i = 0; i < 5 && !served; i++) {
      served = await fresh(`${server.url}/ft/version`, { signal: AbortSignal.timeout(3_000) }).then(
        (r) => r.status === 200,
        () => false,
      );
    }
    expect(served).toBe(true);
    // Under a loaded machine (the whole suite in parallel) a worker under tsx takes long to start.
    const deadline = Date.now() + 60_000;
    let pids = workerPids(server.child.pid!);
    while ((pids.length < 2 || pids.includes(victim)) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      pids = workerPids(server.child.pid!);
    }
    expect(pids).toHaveLength(2);
    expect(pids).toContain(survivor);
    expect(pids).not.toContain(victim);
  }, 90_000);

  it('stops every worker on SIGTERM and exits 0; the store is consistent', async () => {
    const pids = workerPids(server.child.pid!);
    expect(await server.stop('SIGTERM')).toBe(0);
    for (const pid of pids) expect(() => process.kill(pid, 0)).toThrow(); // gone
    const rt = await openRuntime(loadConfig({ env: { ...env, LOG_LEVEL: 'silent' } }));
    try {
      expect(await checkConsistency(rt)).toEqual(CONSISTENT);
    } finally {
      await rt.close();
    }
  }, 60_000);
});

describe('workerExecArgv', () => {
  const workerOnly = ['--max-old-space-size=2047'];

  it("adds the server's flags the primary was started without, once, and the workers' own", () => {
    expect(WORKER_NODE_FLAGS).toEqual(workerOnly);
    expect(workerExecArgv(['--import', 'tsx'])).toEqual(['--import', 'tsx', '--no-concurrent-marking', '--max-semi-space-size=4', ...workerOnly]);
    expect(workerExecArgv(['--no-concurrent-marking'])).toEqual(['--no-concurrent-marking', '--max-semi-space-size=4', ...workerOnly]);
    // as npm start and the bin start the primary
    expect(workerExecArgv([...SERVER_NODE_FLAGS])).toEqual([...SERVER_NODE_FLAGS, ...workerOnly]);
  });

  it('leaves an option the operator set, in the flags or in NODE_OPTIONS, in either spelling', () => {
    expect(workerExecArgv(['--max-semi-space-size=32'])).toEqual(['--max-semi-space-size=32', '--no-concurrent-marking', ...workerOnly]);
    expect(workerExecArgv([], '--enable-source-maps --max_semi_space_size=8')).toEqual(['--no-concurrent-marking', ...workerOnly]);
    expect(workerExecArgv(['--max-old-space-size=8192'])).toEqual(['--max-old-space-size=8192', ...SERVER_NODE_FLAGS]);
    expect(workerExecArgv([], '--max_old_space_size=512')).toEqual([...SERVER_NODE_FLAGS]);
    expect(workerExecArgv(['--concurrent-marking'])).toEqual(['--concurrent-marking', '--max-semi-space-size=4', ...workerOnly]);
  });
});

describe('workerEnv', () => {
  it("gives each worker its index and glibc's malloc threshold", () => {
    expect(workerEnv(1, {})).toEqual({ S3DEDUP_WORKER_INDEX: '1', MALLOC_MMAP_THRESHOLD_: '131072' });
  });

  it('leaves a threshold the operator set', () => {
    expect(workerEnv(0, { MALLOC_MMAP_THRESHOLD_: '65536' })).toEqual({ S3DEDUP_WORKER_INDEX: '0' });
  });
});
