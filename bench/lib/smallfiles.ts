// Small files: 4 KiB text files sent as the Filetracker client sends them (gzip level 9 body,
// SHA256-Checksum, Logical-Size, version in ?last_modified=), PUT and GET with wrk at several
// connection counts.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { textLike } from './data.js';
import { procMemory, resetPeakRss, sampleTreeRss } from './sys.js';
import type { Target } from './targets.js';
import { runWrk, type WrkResult } from './wrk.js';

export const SMALL_SIZE = 4096;

export interface PoolItem {
  content: Buffer;
  gz: Buffer;
  sha256: string;
}

export interface Pool {
  /** path without extension: <path>.bin and <path>.idx, read by wrk/common.lua */
  path: string;
  items: PoolItem[];
}

/** N distinct 4 KiB text files and their gzip -9 bodies, cached under cacheDir. */
export function bodyPool(cacheDir: string, count: number): Pool {
  mkdirSync(cacheDir, { recursive: true });
  const path = join(cacheDir, `pool-${count}x${SMALL_SIZE}`);
  const base = textLike(8 << 20, 777);
  const items: PoolItem[] = [];
  let state = 99991;
  for (let i = 0; i < count; i++) {
    state = (Math.imul(state, 1_103_515_245) + 12_345) >>> 0;
    const from = state % (base.length - SMALL_SIZE);
    const content = Buffer.from(base.subarray(from, from + SMALL_SIZE));
    content.write(`bench file ${i}\n`, 0); // distinct contents, so every PUT stores a new file
    items.push({ content, gz: Buffer.alloc(0), sha256: createHash('sha256').update(content).digest('hex') });
  }
  if (existsSync(`${path}.idx`) && existsSync(`${path}.bin`)) {
    const bin = readFileSync(`${path}.bin`);
    const lines = readFileSync(`${path}.idx`, 'utf8').trim().split('\n');
    let off = 0;
    if (lines.length === count) {
      lines.forEach((line, i) => {
        const len = Number(line.split(' ')[0]);
        items[i].gz = bin.subarray(off, off + len);
        off += len;
      });
      if (lines.every((l, i) => l.split(' ')[1] === items[i].sha256)) return { path, items };
    }
  }
  for (const it of items) it.gz = gzipSync(it.content, { level: 9 });
  writeFileSync(`${path}.bin.tmp`, Buffer.concat(items.map((it) => it.gz)));
  writeFileSync(`${path}.idx.tmp`, items.map((it) => `${it.gz.length} ${it.sha256} ${it.content.length}\n`).join(''));
  renameSync(`${path}.bin.tmp`, `${path}.bin`);
  renameSync(`${path}.idx.tmp`, `${path}.idx`);
  return { path, items };
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
    'Logical-Size': String(item.content.length),
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
    const want = t.mode === 'ft' ? pool.items[0].content : pool.items[0].gz;
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
}

export interface SmallOptions {
  connections: number[];
  durationS: number;
  warmupS: number;
  getFiles: number;
  log: (s: string) => void;
}

/** PUT then GET at each connection count; returns one row per (op, connections). */
export async function smallFileSeries(t: Target, pool: Pool, o: SmallOptions): Promise<{ rows: SmallRow[]; peakRssBytes: number }> {
  const rows: SmallRow[] = [];
  const runId = Date.now().toString(36);
  const auth = t.authHeaders.Authorization ?? '';
  let offset = Math.floor(Math.random() * pool.items.length);
  const memory = watchMemory(t);
  const putArgs = (tag: string) => {
    offset += 100_000;
    return [t.path('bench/put'), `${runId}-${tag}`, pool.path, String(offset), t.putQuery, t.mode, auth];
  };
  const wrk = (script: 'put.lua' | 'get.lua', scriptArgs: string[], connections: number, durationS: number) =>
    runWrk({ url: t.url, script, scriptArgs, connections, durationS, threads: 1 });

  if (o.warmupS > 0) await wrk('put.lua', putArgs('warm'), 16, o.warmupS);
  for (const c of o.connections) {
    const result = await wrk('put.lua', putArgs(`c${c}`), c, o.durationS);
    o.log(`${t.name} PUT c=${c}: ${fmtRow(result)}`);
    rows.push({ target: t.name, op: 'PUT', connections: c, result });
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
  return { rows, peakRssBytes: memory.stop() };
}

function fmtRow(r: WrkResult): string {
  return `${r.rps.toFixed(0)} req/s, p50 ${r.latency.p50.toFixed(2)} ms, p99 ${r.latency.p99.toFixed(2)} ms, errors ${r.totalErrors}`;
}

/** Peak memory of a target from now until stop(): VmHWM (reset first) or a sampled tree sum. */
export function watchMemory(t: Target): { stop(): number } {
  if (t.memory === 'hwm' && resetPeakRss(t.pid)) {
    return { stop: () => procMemory(t.pid)?.hwm ?? 0 };
  }
  const sampler = sampleTreeRss(t.pid, 100);
  return { stop: () => sampler.stop() };
}
