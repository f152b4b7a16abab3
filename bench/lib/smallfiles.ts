// Small files: 4 KiB text files sent as the Filetracker client sends them (gzip level 9 body,
// SHA256-Checksum, Logical-Size, version in ?last_modified=), PUT and GET with wrk at several
// connection counts.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { textLike } from './data.js';
import { procMemory, resetPeakRss, sampleTreeMemory, type MemoryPeak } from './sys.js';
import type { Target } from './targets.js';
import { runWrk, type WrkResult } from './wrk.js';

export const SMALL_SIZE = 4096;

export interface PoolItem {
  /** the gzip -9 body, a view into the pool file */
  gz: Buffer;
  sha256: string;
  /** uncompressed bytes */
  size: number;
}

export interface Pool {
  /** path without extension: <path>.bin and <path>.idx, read by wrk/common.lua */
  path: string;
  items: PoolItem[];
  /** the uncompressed content of item i (made again, not kept: the pool is large) */
  content(i: number): Buffer;
}

/**
 * N distinct 4 KiB text files and their gzip -9 bodies, cached under cacheDir. The bench sizes
 * N so that every PUT of a target's series stores a content it has not stored before (as a
 * Filetracker server mostly sees); smallFileSeries reports any series that ran past the pool.
 */
export function bodyPool(cacheDir: string, count: number): Pool {
  mkdirSync(cacheDir, { recursive: true });
  const path = join(cacheDir, `pool-${count}x${SMALL_SIZE}`);
  const base = textLike(8 << 20, 777);
  const starts = new Uint32Array(count);
  let state = 99991;
  for (let i = 0; i < count; i++) {
    state = (Math.imul(state, 1_103_515_245) + 12_345) >>> 0;
    starts[i] = state % (base.length - SMALL_SIZE);
  }
  const content = (i: number) => {
    const c = Buffer.from(base.subarray(starts[i], starts[i] + SMALL_SIZE));
    c.write(`bench file ${i}\n`, 0); // distinct contents, so every PUT stores a new file
    return c;
  };
  const sha256 = (i: number) => createHash('sha256').update(content(i)).digest('hex');
  if (existsSync(`${path}.idx`) && existsSync(`${path}.bin`)) {
    const bin = readFileSync(`${path}.bin`);
    const lines = readFileSync(`${path}.idx`, 'utf8').trim().split('\n');
    // The cache is checked against a sample of the recomputed contents (all of them took seconds).
    const sample = [0, 1, count >> 1, count - 1];
    if (lines.length === count && sample.every((i) => lines[i].split(' ')[1] === sha256(i))) {
      const items: PoolItem[] = [];
      let off = 0;
      for (const line of lines) {
        const [len, sha, size] = line.split(' ');
        items.push({ gz: bin.subarray(off, off + Number(len)), sha256: sha, size: Number(size) });
        off += Number(len);
      }
      return { path, items, content };
    }
  }
  const gzs: Buffer[] = [];
  const idx: string[] = [];
  for (let i = 0; i < count; i++) {
    const c = content(i);
    const gz = gzipSync(c, { level: 9 });
    gzs.push(gz);
    idx.push(`${gz.length} ${createHash('sha256').update(c).digest('hex')} ${c.length}\n`);
  }
  writeFileSync(`${path}.bin.tmp`, Buffer.concat(gzs));
  writeFileSync(`${path}.idx.tmp`, idx.join(''));
  renameSync(`${path}.bin.tmp`, `${path}.bin`);
  renameSync(`${path}.idx.tmp`, `${path}.idx`);
  return bodyPool(cacheDir, count);
}

/** One HTTP request with a keep-alive agent; resolves with status and body. */
export function httpRequest(
  agent: Agent,
  url: string,
  method: string,
  headers: Record<string, string>,
  body?: Buffer,
): Promise<{ status: number; body: Buffer; headers: Record<string, string | string[] | undefined> }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, agent, headers: body ? { ...headers, 'Content-Length': String(body.length) } : headers, timeout: 60_000 }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts), headers: res.headers }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: timeout`)));
    req.on('error', reject);
    req.end(body);
  });
}

export function ftPutHeaders(item: PoolItem): Record<string, string> {
  return {
    'Content-Type': 'application/octet-stream',
    'Content-Encoding': 'gzip',
    'SHA256-Checksum': item.sha256,
    'Logical-Size': String(item.size),
  };
}

/** Stores pool items 0..count-1 under <prefix>/<i> with `concurrency` requests in flight. */
export async function prepopulate(t: Target, pool: Pool, prefix: string, count: number, concurrency = 16): Promise<void> {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      const item = pool.items[i % pool.items.length];
      const headers = t.mode === 'ft' ? ftPutHeaders(item) : { ...t.authHeaders, 'Content-Type': 'application/octet-stream' };
      const res = await httpRequest(agent, `${t.url}${t.path(`${prefix}/${i}`)}${t.putQuery}`, 'PUT', headers, item.gz);
      if (res.status !== 200) throw new Error(`${t.name}: PUT ${prefix}/${i} answered ${res.status}: ${res.body.toString().slice(0, 300)}`);
    }
  };
  try {
    await Promise.all(Array.from({ length: concurrency }, worker));
    // Read one back and check it, so a fast wrong answer cannot pass as a result.
    const res = await httpRequest(agent, `${t.url}${t.path(`${prefix}/0`)}`, 'GET', t.authHeaders);
    if (res.status !== 200) throw new Error(`${t.name}: GET ${prefix}/0 answered ${res.status}`);
    const got = t.mode === 'ft' ? gunzipSync(res.body) : res.body;
    const want = t.mode === 'ft' ? pool.content(0) : pool.items[0].gz;
    if (!got.equals(want)) throw new Error(`${t.name}: GET ${prefix}/0 returned different content`);
  } finally {
    agent.destroy();
  }
}

export interface SmallRow {
  target: string;
  op: 'PUT' | 'GET';
  connections: number;
  result: WrkResult;
  /** PUT: requests whose body this target had stored already (0 unless the pool ran out) */
  repeatedBodies?: number;
}

export interface SmallOptions {
  connections: number[];
  durationS: number;
  warmupS: number;
  getFiles: number;
  log: (s: string) => void;
}

/**
 * put.lua's arguments for a series that stores `bench/<prefix>/<run>/...` from pool item `start`
 * on. Such a series sends items start+1 .. start+requests (modulo the pool), so the next one
 * starts at start + requests + connections, past those still in flight when it ended too.
 */
function putArgs(t: Target, prefix: string, run: string, pool: Pool, start: number): string[] {
  return [t.path(`bench/${prefix}`), run, pool.path, String(start), t.putQuery, t.mode, t.authHeaders.Authorization ?? ''];
}

/** PUT then GET at each connection count; returns one row per (op, connections). */
export async function smallFileSeries(t: Target, pool: Pool, o: SmallOptions): Promise<{ rows: SmallRow[]; peak: MemoryPeak }> {
  const rows: SmallRow[] = [];
  const runId = Date.now().toString(36);
  const auth = t.authHeaders.Authorization ?? '';
  // Items below getFiles are the GET series' files; PUT series take the items after them, each
  // series starting past the last one the previous one sent (requests in flight at the end too).
  let next = o.getFiles;
  const memory = watchMemory(t);
  const n = pool.items.length;
  const putSeries = async (tag: string, connections: number, durationS: number): Promise<{ result: WrkResult; repeatedBodies: number }> => {
    const start = next;
    const result = await wrk('put.lua', putArgs(t, 'put', `${runId}-${tag}`, pool, start), connections, durationS);
    next = start + result.requests + connections;
    // put.lua sends items start+1 .. start+requests, modulo n: those past n were sent before.
    return { result, repeatedBodies: Math.min(result.requests, Math.max(0, start + result.requests - (n - 1))) };
  };
  const wrk = (script: 'put.lua' | 'get.lua', scriptArgs: string[], connections: number, durationS: number) =>
    runWrk({ url: t.url, script, scriptArgs, connections, durationS, threads: 1 });

  if (o.warmupS > 0) await putSeries('warm', 16, o.warmupS);
  for (const c of o.connections) {
    const { result, repeatedBodies } = await putSeries(`c${c}`, c, o.durationS);
    const repeated = repeatedBodies ? `, ${repeatedBodies} of them repeating a body already stored (the pool of ${n} ran out)` : '';
    o.log(`${t.name} PUT c=${c}: ${fmtRow(result)}${repeated}`);
    rows.push({ target: t.name, op: 'PUT', connections: c, result, repeatedBodies });
  }
  o.log(`${t.name}: storing ${o.getFiles} files to read`);
  await prepopulate(t, pool, 'bench/get', o.getFiles);
  const getArgs = [t.path('bench/get'), String(o.getFiles), auth];
  if (o.warmupS > 0) await wrk('get.lua', getArgs, 16, o.warmupS);
  for (const c of o.connections) {
    const result = await wrk('get.lua', getArgs, c, o.durationS);
    o.log(`${t.name} GET c=${c}: ${fmtRow(result)}`);
    rows.push({ target: t.name, op: 'GET', connections: c, result });
  }
  return { rows, peak: memory.stop() };
}

function fmtRow(r: WrkResult): string {
  return `${r.rps.toFixed(0)} req/s, p50 ${r.latency.p50.toFixed(2)} ms, p99 ${r.latency.p99.toFixed(2)} ms, errors ${r.totalErrors}`;
}

/** Peak memory of a target from now until stop(): VmHWM (reset first) or a sampled tree sum. */
export function watchMemory(t: Target): { stop(): MemoryPeak } {
  if (t.memory === 'hwm' && resetPeakRss(t.pid)) {
    return { stop: () => ({ rss: procMemory(t.pid)?.hwm ?? 0, pss: null }) };
  }
  return sampleTreeMemory(t.pid, 100);
}

/** One round of one target in alternatingRounds. */
export interface AlternatingRow {
  target: string;
  op: 'PUT' | 'GET';
  round: number;
  rps: number;
  p99Ms: number;
  requests: number;
  errors: number;
}

/**
 * The 16-connection PUT and GET of several targets, measured in short turns that alternate
 * between them (the order reversed every other round), on servers started for it. A 2-core VM's
 * speed drifts by tens of percent over the minutes that separate two targets' series, so a ratio
 * of two series measured apart can say more about the VM than about the servers; the per-round
 * ratios of this stage share each moment.
 */
export async function alternatingRounds(
  targets: Target[],
  pool: Pool,
  o: { rounds: number; durationS: number; warmupS: number; getFiles: number; log: (s: string) => void },
): Promise<AlternatingRow[]> {
  const rows: AlternatingRow[] = [];
  const runId = Date.now().toString(36);
  const connections = 16;
  const next = new Map<Target, number>(targets.map((t) => [t, o.getFiles]));
  for (const t of targets) await prepopulate(t, pool, 'bench/alt-get', o.getFiles);
  const turn = async (t: Target, tag: string, durationS: number) => {
    // The other server's dirty pages are written back now, not during this turn.
    await new Promise<void>((resolve, reject) => execFile('sync', (err) => (err ? reject(err) : resolve())));
    const start = next.get(t)!;
    const run = (script: 'put.lua' | 'get.lua', args: string[]) => runWrk({ url: t.url, script, scriptArgs: args, connections, durationS, threads: 1 });
    const put = await run('put.lua', putArgs(t, 'alt', `${runId}-${tag}`, pool, start));
    next.set(t, start + put.requests + connections);
    const get = await run('get.lua', [t.path('bench/alt-get'), String(o.getFiles), t.authHeaders.Authorization ?? '']);
    return { put, get };
  };
  if (o.warmupS > 0) for (const t of targets) await turn(t, 'warm', o.warmupS);
  for (let round = 1; round <= o.rounds; round++) {
    const order = round % 2 === 1 ? targets : [...targets].reverse();
    for (const t of order) {
      const { put, get } = await turn(t, `r${round}`, o.durationS);
      for (const [op, r] of [['PUT', put], ['GET', get]] as const) {
        rows.push({ target: t.name, op, round, rps: r.rps, p99Ms: r.latency.p99, requests: r.requests, errors: r.totalErrors });
      }
      o.log(`round ${round} ${t.name}: PUT ${put.rps.toFixed(0)}/s, GET ${get.rps.toFixed(0)}/s`);
    }
  }
  return rows;
}
