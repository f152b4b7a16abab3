// Large files: one streaming PUT and one GET per file and target, timed with curl; MB/s counts
// logical (uncompressed) bytes, 1 MB = 10^6 bytes. The server's peak RSS is taken over each
// request. s3dedup's answers are read back once more, untimed, by a Node client in its own
// process (bigclient.ts) that gunzips and hashes them against the original.
//
// Why curl for the timed requests: the client shares the two cores with the server, so its own
// CPU is part of every number, as wrk's is for small files. A Node client reading a 256 MiB GET
// (and discarding it) took 0.44-0.60 s where curl took 0.32-0.36 s on the same fresh servers
// (3 interleaved pairs, 2026-12-07); every row, peers included, is timed by the same client.
import { execFile } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertLoopback, type BigRequest, type BigResult } from './bigclient.js';
import type { LargeFile } from './data.js';
import { watchMemory } from './smallfiles.js';
import { BENCH_DIR, ROOT, type MemoryPeak } from './sys.js';
import type { Target } from './targets.js';

export interface LargeCase {
  data: 'random' | 'text';
  /** what the client sends: the plain bytes (as `compress_hint=False` does), or gzip -9 with hints */
  body: 'plain' | 'gzip';
  file: LargeFile;
}

export interface LargeRow {
  target: string;
  data: LargeCase['data'];
  body: LargeCase['body'];
  op: 'PUT' | 'GET';
  sizeBytes: number;
  seconds: number;
  /** logical MB/s */
  mbps: number;
  wireBytes: number;
  peakRssBytes: number;
  /** process-tree targets: peak of the summed PSS (shared pages counted once); null for one process */
  peakPssBytes: number | null;
  /** s3dedup rows: content read back equals the original; null when not checked */
  verified: boolean | null;
  error?: string;
  /** MB/s of each run when the row was measured on several fresh servers (mbps and seconds are their medians) */
  runsMbps?: number[];
}

/**
 * One row per target, data, body and op: the median of the runs measured on separate fresh
 * servers (one sample of a 256 MiB transfer varies by 20-30% on a small VM). Peak memory is the
 * highest of the runs, read back must hold in all of them, and a failed run makes the row fail.
 */
export function mergeRuns(rows: LargeRow[]): LargeRow[] {
  const groups = new Map<string, LargeRow[]>();
  for (const r of rows) {
    const key = `${r.target}|${r.data}|${r.body}|${r.op}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  return [...groups.values()].map((runs) => {
    if (runs.length === 1) return runs[0];
    const failed = runs.find((r) => r.error);
    if (failed) return failed;
    const bySpeed = [...runs].sort((a, b) => a.mbps - b.mbps);
    const median = bySpeed[Math.floor(bySpeed.length / 2)];
    const max = (f: (r: LargeRow) => number | null) => (runs.some((r) => f(r) !== null) ? Math.max(...runs.map((r) => f(r) ?? 0)) : null);
    return {
      ...median,
      peakRssBytes: max((r) => r.peakRssBytes)!,
      peakPssBytes: max((r) => r.peakPssBytes),
      verified: runs.some((r) => r.verified === null) ? median.verified : runs.every((r) => r.verified),
      runsMbps: runs.map((r) => r.mbps),
    };
  });
}

/**
 * A timed request by curl (PUT: the file as the body, with its exact Content-Length and without
 * `Expect: 100-continue`; GET: the body discarded). An error answer's first bytes are kept.
 */
export function curlRequest(req: BigRequest): Promise<BigResult> {
  assertLoopback(req.url);
  // A GET's body goes nowhere (writing 256 MiB to a file would time the disk); a PUT's answer
  // is small and kept for its error text.
  const bodyFile = req.op === 'PUT' ? join(tmpdir(), `bench-curl-${process.pid}-${Date.now().toString(36)}`) : '/dev/null';
  const args = ['-sS', '--http1.1', '-o', bodyFile, '-w', '%{http_code} %{size_download} %{size_upload} %{time_total}', '--max-time', String(Math.ceil(req.timeoutMs / 1000))];
  for (const [k, v] of Object.entries(req.headers)) args.push('-H', `${k}: ${v}`);
  if (req.op === 'PUT') args.push('-H', 'Expect:', '-T', req.file!);
  args.push(req.url);
  return new Promise((resolve) => {
    execFile('curl', args, { timeout: req.timeoutMs + 30_000, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      const [code, down, up, total] = stdout.trim().split(' ').map(Number);
      const status = Number.isFinite(code) ? code : 0;
      let body: string | undefined;
      if (req.op === 'PUT') {
        try {
          if (status !== 200) body = readFileSync(bodyFile).subarray(0, 500).toString();
        } catch {
          // no body written
        }
        rmSync(bodyFile, { force: true });
      }
      resolve({
        status,
        wireBytes: req.op === 'PUT' ? up : down,
        ms: total * 1000,
        error: err ? `curl: ${stderr.trim() || err.message}` : undefined,
        body,
      });
    });
  });
}

export function bigRequest(req: BigRequest): Promise<BigResult> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', join(BENCH_DIR, 'lib', 'bigclient.ts'), JSON.stringify(req)],
      { cwd: ROOT, timeout: req.timeoutMs + 30_000, maxBuffer: 1 << 20 },
      (err, stdout, stderr) => {
        const line = stdout.split('\n').find((l) => l.startsWith('BIG_JSON '));
        if (!line) return reject(new Error(`bigclient failed: ${err?.message ?? ''}\n${stderr}`));
        resolve(JSON.parse(line.slice('BIG_JSON '.length)) as BigResult);
      },
    );
  });
}

export async function largeFileSeries(t: Target, cases: LargeCase[], log: (s: string) => void, opts: { putOnly?: boolean; timeoutMs?: number } = {}): Promise<LargeRow[]> {
  const timeoutMs = opts.timeoutMs ?? 600_000;
  const rows: LargeRow[] = [];
  for (const c of cases) {
    const key = `bench/large/${c.data}-${c.body}-${Date.now().toString(36)}`;
    const url = `${t.url}${t.path(key)}`;
    const wireFile = c.body === 'gzip' ? c.file.gzPath! : c.file.path;
    let headers: Record<string, string> = { 'Content-Type': 'application/octet-stream' };
    if (t.mode === 's3') headers = { ...headers, ...t.authHeaders };
    else if (c.body === 'gzip') {
      headers = { ...headers, 'Content-Encoding': 'gzip', 'SHA256-Checksum': c.file.sha256, 'Logical-Size': String(c.file.size) };
    }
    const row = (op: 'PUT' | 'GET', r: BigResult, peak: MemoryPeak, verified: boolean | null, error?: string): LargeRow => ({
      target: t.name,
      data: c.data,
      body: c.body,
      op,
      sizeBytes: c.file.size,
      seconds: r.ms / 1000,
      mbps: c.file.size / 1e6 / (r.ms / 1000),
      wireBytes: r.wireBytes,
      peakRssBytes: peak.rss,
      peakPssBytes: peak.pss,
      verified,
      error,
    });

    let mem = watchMemory(t);
    const put = await curlRequest({ op: 'PUT', url: `${url}${t.putQuery}`, headers, file: wireFile, timeoutMs });
    const putPeak = mem.stop();
    const putError = put.status !== 200 ? `status ${put.status} ${put.error ?? ''} ${put.body ?? ''}`.trim() : undefined;
    rows.push(row('PUT', put, putPeak, null, putError));
    log(`${t.name} large ${c.data}/${c.body} PUT: ${putError ?? `${rows.at(-1)!.mbps.toFixed(0)} MB/s, peak RSS ${(putPeak.rss / 2 ** 20).toFixed(0)} MiB`}`);
    if (putError || opts.putOnly) continue;

    mem = watchMemory(t);
    const get = await curlRequest({ op: 'GET', url, headers: t.authHeaders, timeoutMs });
    const getPeak = mem.stop();
    let verified: boolean | null = null;
    let getError = get.status !== 200 ? `status ${get.status} ${get.error ?? ''}`.trim() : undefined;
    if (!getError && t.kind === 's3dedup') {
      const check = await bigRequest({ op: 'GET', url, headers: t.authHeaders, verify: 'gzip', timeoutMs });
      verified = check.status === 200 && check.sha256 === c.file.sha256 && check.logicalBytes === c.file.size;
      if (!verified) getError = `read-back mismatch: ${check.logicalBytes} bytes, sha256 ${check.sha256?.slice(0, 12)} ${check.error ?? ''}`;
    }
    rows.push(row('GET', get, getPeak, verified, getError));
    log(`${t.name} large ${c.data}/${c.body} GET: ${getError ?? `${rows.at(-1)!.mbps.toFixed(0)} MB/s, peak RSS ${(getPeak.rss / 2 ** 20).toFixed(0)} MiB`}`);
  }
  return rows;
}
