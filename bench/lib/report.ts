// The results as Markdown (tables plus target checks) and as JSON.
import type { DedupResult } from './dedup.js';
import type { LargeRow } from './largefiles.js';
import type { Limit } from './limits.js';
import { profileMarkdown, type ProfileSummary } from './profile.js';
import type { AlternatingRow, SmallRow } from './smallfiles.js';
import type { MachineInfo } from './sys.js';

export interface Unavailable {
  target: string;
  reason: string;
}

export interface BenchResults {
  date: string;
  commit: string;
  dirty: boolean;
  mode: 'quick' | 'full';
  machine: MachineInfo;
  settings: Record<string, unknown>;
  peers: Record<string, string>;
  small: SmallRow[];
  /** the main row and the Python server in alternating turns (16 connections) */
  alternating?: AlternatingRow[];
  smallPeakRss: Record<string, number>;
  /** process-tree targets: peak summed PSS during the small-file runs */
  smallPeakPss?: Record<string, number>;
  /** RSS of each s3dedup server right after start, before any load */
  idleRss: Record<string, number>;
  large: LargeRow[];
  dedup?: DedupResult;
  limits?: { limits: Limit[]; bounds: Record<string, number> };
  profiles: Array<{ title: string; summary: ProfileSummary }>;
  unavailable: Unavailable[];
  checks: Check[];
  durationS: number;
  /** os.loadavg() when the run started and ended: other work on the machine skews the numbers */
  loadAverage: { start: number[]; end: number[] };
}

export interface Check {
  target: string;
  goal: string;
  measured: string;
  /** null: could not be measured in this run */
  met: boolean | null;
}

export const MAIN = 's3dedup sqlite+local';
export const MAIN_S3 = 's3dedup sqlite+s3';
/** The embedded default with one worker process per core (WORKERS=2 on 2 cores). */
export const MAIN_WORKERS = 's3dedup sqlite+local, WORKERS=2';
export const FT = 'Filetracker (Python) local disk';
export const DIRECT_S3 = 'direct S3 (moto)';
export const RELAY_S3 = 'bare Node relay to S3 (moto)';
export const DEFAULT_CHUNK_LABEL = '128 KiB';

const f0 = (x: number) => x.toFixed(0);
/** A ratio minus one as a signed percentage: +75%, -8%. */
const signedPct = (x: number) => `${x >= 0 ? '+' : ''}${f0(x * 100)}%`;
const f1 = (x: number) => x.toFixed(1);
const f2 = (x: number) => x.toFixed(2);
const mbOf = (b: number) => b / 1e6;

/**
 * Per round of the alternating stage, `ours` rate over `theirs` for `op`, and their median
 * (the lower middle one of an even count); null without a round that has both.
 */
export function alternatingRatios(rows: readonly AlternatingRow[], ours: string, theirs: string, op: 'PUT' | 'GET'): { ratios: number[]; median: number } | null {
  const rate = (t: string, round: number) => rows.find((x) => x.target === t && x.op === op && x.round === round)?.rps;
  const ratios: number[] = [];
  for (const round of [...new Set(rows.map((x) => x.round))].sort((a, b) => a - b)) {
    const a = rate(ours, round);
    const b = rate(theirs, round);
    if (a !== undefined && b !== undefined && b > 0) ratios.push(a / b);
  }
  if (!ratios.length) return null;
  const sorted = [...ratios].sort((a, b) => a - b);
  return { ratios, median: sorted[Math.floor((sorted.length - 1) / 2)] };
}

export function computeChecks(r: Omit<BenchResults, 'checks'>): Check[] {
  const checks: Check[] = [];
  const small = (t: string, op: string, c: number) => r.small.find((x) => x.target === t && x.op === op && x.connections === c)?.result;
  // The small-file targets, for the default (one process) and for one worker per core.
  for (const row of [MAIN, MAIN_WORKERS]) {
    const rowNote = row === MAIN ? '' : ` (${row.replace('s3dedup ', '')})`;
    for (const [op, factor] of [['PUT', 3], ['GET', 2]] as const) {
      const ours = small(row, op, 16);
      const theirs = small(FT, op, 16);
      if (row !== MAIN && !ours) continue;
      checks.push({
        target: `small ${op} rate at 16 connections >= ${factor}x Filetracker${rowNote}`,
        goal: `>= ${factor}.0x`,
        measured: ours && theirs ? `${f0(ours.rps)} vs ${f0(theirs.rps)} req/s = ${f2(ours.rps / theirs.rps)}x` : 'not measured',
        met: ours && theirs ? ours.rps >= factor * theirs.rps : null,
      });
      const turns = row === MAIN && r.alternating ? alternatingRatios(r.alternating, MAIN, FT, op) : null;
      if (turns) {
        checks.push({
          target: `small ${op} rate at 16 connections >= ${factor}x Filetracker, median of ${turns.ratios.length} alternating rounds`,
          goal: `>= ${factor}.0x`,
          measured: `${f2(turns.median)}x (rounds: ${turns.ratios.map((x) => `${f2(x)}x`).join(', ')})`,
          met: turns.median >= factor,
        });
      }
      checks.push({
        target: `small ${op} p99 at 16 connections < 50 ms${rowNote}`,
        goal: '< 50 ms',
        measured: ours ? `${f1(ours.latency.p99)} ms` : 'not measured',
        met: ours ? ours.latency.p99 < 50 : null,
      });
    }
  }
  const mainRows = r.small.filter((x) => x.target === MAIN || x.target === MAIN_WORKERS);
  const mainTurns = (r.alternating ?? []).filter((x) => x.target === MAIN);
  const errs = mainRows.reduce((n, x) => n + x.result.totalErrors, 0) + mainTurns.reduce((n, x) => n + x.errors, 0);
  const requests = mainRows.reduce((n, x) => n + x.result.requests, 0) + mainTurns.reduce((n, x) => n + x.requests, 0);
  checks.push({ target: 'small files: no errors', goal: '0', measured: mainRows.length ? `${errs} errors in ${requests} requests` : 'not measured', met: mainRows.length ? errs === 0 : null });

  const large = (t: string, data: string, op: string) => r.large.find((x) => x.target === t && x.data === data && x.op === op && !x.error);
  for (const [data, op, goal] of [['random', 'PUT', 300], ['random', 'GET', 600], ['text', 'PUT', 150]] as const) {
    const row = large(MAIN, data, op);
    checks.push({ target: `large ${data} ${op} on local disk >= ${goal} MB/s`, goal: `>= ${goal}`, measured: row ? `${f0(row.mbps)} MB/s` : 'not measured', met: row ? row.mbps >= goal : null });
  }
  // Peak RSS of one server process (WORKERS=1, the default, from VmHWM), and separately the
  // memory of the WORKERS=2 row's three processes (primary and two workers). Their summed RSS
  // counts every shared page (the node binary's text, libraries: about 45 MB each) three times,
  // so that row is judged by its summed PSS, which counts each once; both are reported.
  const single = (t: string) => t.startsWith('s3dedup') && t !== MAIN_WORKERS;
  const singleRows = r.large.filter((x) => single(x.target));
  const singleSmall = Object.entries(r.smallPeakRss).filter(([t]) => single(t)).map(([, v]) => v);
  if (singleRows.length || singleSmall.length) {
    const peak = Math.max(0, ...singleRows.map((x) => x.peakRssBytes), ...singleSmall);
    checks.push({ target: 'peak RSS of the s3dedup server < 300 MB (any file size)', goal: '< 300 MB', measured: `${f0(mbOf(peak))} MB`, met: peak < 300e6 });
  }
  const workerRows = r.large.filter((x) => x.target === MAIN_WORKERS);
  const workerRss = Math.max(0, ...workerRows.map((x) => x.peakRssBytes), r.smallPeakRss[MAIN_WORKERS] ?? 0);
  const workerPss = Math.max(0, ...workerRows.map((x) => x.peakPssBytes ?? 0), r.smallPeakPss?.[MAIN_WORKERS] ?? 0);
  if (workerRss > 0) {
    checks.push({
      target: `peak memory < 300 MB, ${MAIN_WORKERS.replace('s3dedup ', '')} (PSS summed over its 3 processes)`,
      goal: '< 300 MB',
      measured: workerPss > 0 ? `PSS ${f0(mbOf(workerPss))} MB (summed RSS ${f0(mbOf(workerRss))} MB)` : `summed RSS ${f0(mbOf(workerRss))} MB (PSS not measured)`,
      met: workerPss > 0 ? workerPss < 300e6 : null,
    });
  }
  const bad = r.large.filter((x) => x.target.startsWith('s3dedup') && (x.error || x.verified === false));
  checks.push({ target: 'large files read back intact (s3dedup rows)', goal: 'all', measured: bad.length ? bad.map((b) => `${b.target} ${b.data} ${b.op}: ${b.error}`).join('; ') : `${r.large.filter((x) => x.verified).length} verified`, met: r.large.some((x) => x.verified) ? bad.length === 0 : null });

  if (r.dedup) {
    const d = r.dedup;
    const def = d.chunkers.find((c) => c.label === DEFAULT_CHUNK_LABEL) ?? d.chunkers[0];
    if (def) {
      if (typeof d.restic !== 'string') {
        const ratio = def.storedBytes / d.restic.storedBytes;
        checks.push({ target: `dedup: stored bytes <= 0.75x restic (chunker ${def.label})`, goal: '<= 0.75', measured: `${f1(mbOf(def.storedBytes))} / ${f1(mbOf(d.restic.storedBytes))} MB = ${f2(ratio)}`, met: ratio <= 0.75 });
      }
      const ratio = def.storedBytes / d.wholeFile.gzipBytes;
      checks.push({ target: `dedup: stored bytes <= 0.6x whole-file dedup + gzip (chunker ${def.label})`, goal: '<= 0.60', measured: `${f1(mbOf(def.storedBytes))} / ${f1(mbOf(d.wholeFile.gzipBytes))} MB = ${f2(ratio)}`, met: ratio <= 0.6 });
    }
  }
  for (const [data, body] of [['random', 'plain'], ['text', 'gzip']] as const) {
    const proxy = large(MAIN_S3, data, 'GET');
    const direct = large(DIRECT_S3, data, 'GET');
    const relay = large(RELAY_S3, data, 'GET');
    const overhead = proxy && direct ? direct.mbps / proxy.mbps - 1 : null;
    // What the one extra loopback hop costs alone, in the same run: the floor under the target.
    const floor = relay && direct ? `; a bare Node relay ${f0(relay.mbps)} MB/s: ${signedPct(direct.mbps / relay.mbps - 1)}` : '';
    checks.push({
      target: `proxy overhead over direct S3, large ${data} GET (${body} body) < 20%`,
      goal: '< 20%',
      measured: overhead === null ? 'not measured' : `${f0(proxy!.mbps)} vs ${f0(direct!.mbps)} MB/s: ${signedPct(overhead)} time${floor}`,
      met: overhead === null ? null : overhead < 0.2,
    });
  }
  return checks;
}

export function toMarkdown(r: BenchResults): string {
  const out: string[] = [];
  const m = r.machine;
  out.push(`# s3dedup-ts benchmark (${r.mode} run)`, '');
  out.push(`- date: ${r.date}`);
  out.push(`- commit: ${r.commit}${r.dirty ? ' (work tree has uncommitted changes)' : ''}`);
  out.push(`- machine: ${m.cpuModel}, ${m.cpus} CPUs, ${m.memoryGiB} GiB, Linux ${m.kernel}, Node ${m.node}`);
  out.push(`- tools: ${Object.entries(m.tools).map(([k, v]) => `${k}: ${v}`).join('; ')}`);
  out.push(`- peers: ${Object.entries(r.peers).map(([k, v]) => `${k}: ${v}`).join('; ')}`);
  out.push(`- settings: ${Object.entries(r.settings).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(', ')}`);
  out.push(`- run time: ${f0(r.durationS)} s; load average (1/5/15 min) at start ${r.loadAverage.start.map(f2).join('/')}, at end ${r.loadAverage.end.map(f2).join('/')} (anything else running on the machine skews the numbers)`, '');

  out.push('## Targets', '', '| target | goal | measured | |', '|---|---|---|---|');
  for (const c of r.checks) out.push(`| ${c.target} | ${c.goal} | ${c.measured} | ${c.met === null ? 'not measured' : c.met ? 'met' : '**missed**'} |`);
  out.push('');
  if (r.unavailable.length) {
    out.push('## Not available in this run', '', '| row | why |', '|---|---|');
    for (const u of r.unavailable) out.push(`| ${u.target} | ${u.reason.replace(/\|/g, '\\|').replace(/\n/g, ' ')} |`);
    out.push('');
  }

  if (r.small.length) {
    out.push('## Small files (4 KiB text, gzip -9 body with SHA256-Checksum and Logical-Size; wrk, keep-alive)', '');
    out.push('| target | op | conns | req/s | p50 ms | p90 ms | p99 ms | max ms | errors |', '|---|---|---:|---:|---:|---:|---:|---:|---:|');
    for (const s of r.small) {
      const x = s.result;
      out.push(`| ${s.target} | ${s.op} | ${s.connections} | ${f0(x.rps)} | ${f2(x.latency.p50)} | ${f2(x.latency.p90)} | ${f2(x.latency.p99)} | ${f1(x.latency.max)} | ${x.totalErrors}${x.totalErrors ? ` (${Object.entries(x.errors).filter(([, v]) => v).map(([k, v]) => `${k} ${v}`).join(', ')})` : ''} |`);
    }
    out.push('');
    const repeated = r.small.filter((s) => s.repeatedBodies);
    out.push(
      repeated.length
        ? `Every PUT sent a body its server had not stored before, except: ${repeated.map((s) => `${s.target} c=${s.connections} ${s.repeatedBodies} of ${s.result.requests}`).join('; ')} (the body pool ran out).`
        : 'Every PUT sent a body its server had not stored before (no series ran past the body pool).',
      '',
    );
    const peaks = Object.entries(r.smallPeakRss);
    const pssOf = (t: string) => (r.smallPeakPss?.[t] ? ` (PSS ${f0(mbOf(r.smallPeakPss[t]))} MB)` : '');
    if (peaks.length) out.push(`Peak RSS during the small-file runs (summed over the processes of multi-process servers, with their summed PSS): ${peaks.map(([t, b]) => `${t} ${f0(mbOf(b))} MB${pssOf(t)}`).join('; ')}.`, '');
    const idle = Object.entries(r.idleRss).filter(([, b]) => b > 0);
    if (idle.length) out.push(`RSS of the s3dedup servers right after start (before any request): ${idle.map(([t, b]) => `${t} ${f0(mbOf(b))} MB`).join('; ')}.`, '');
    const ratioRows: string[] = [];
    for (const t of [...new Set(r.small.map((s) => s.target))].filter((t) => t.startsWith('s3dedup'))) {
      for (const op of ['PUT', 'GET']) {
        const cells = [...new Set(r.small.map((s) => s.connections))].map((c) => {
          const a = r.small.find((s) => s.target === t && s.op === op && s.connections === c);
          const b = r.small.find((s) => s.target === FT && s.op === op && s.connections === c);
          return a && b ? `${f2(a.result.rps / b.result.rps)}x` : '-';
        });
        ratioRows.push(`| ${t} | ${op} | ${cells.join(' | ')} |`);
      }
    }
    if (r.small.some((s) => s.target === FT)) {
      const conns = [...new Set(r.small.map((s) => s.connections))];
      out.push('Request rate relative to the Python Filetracker in the same run:', '');
      out.push(`| target | op | ${conns.map((c) => `${c} conns`).join(' | ')} |`, `|---|---|${conns.map(() => '---:').join('|')}|`, ...ratioRows, '');
    }
    if (r.alternating?.length) {
      out.push(
        `Alternating rounds: ${MAIN} and ${FT} on servers started for it, each round a 16-connection PUT run then a GET run on one server, then the same on the other (the order reversed every other round), so that both are measured at nearly the same moment of the VM:`,
        '',
        '| round | target | PUT req/s | PUT p99 ms | GET req/s | GET p99 ms | errors |',
        '|---:|---|---:|---:|---:|---:|---:|',
      );
      for (const put of r.alternating.filter((x) => x.op === 'PUT')) {
        const get = r.alternating.find((x) => x.op === 'GET' && x.round === put.round && x.target === put.target);
        out.push(`| ${put.round} | ${put.target} | ${f0(put.rps)} | ${f1(put.p99Ms)} | ${get ? f0(get.rps) : '-'} | ${get ? f1(get.p99Ms) : '-'} | ${put.errors + (get?.errors ?? 0)} |`);
      }
      out.push('');
    }
  }

  if (r.large.length) {
    out.push('## Large files (one streaming request each; MB/s of logical bytes, MB = 10^6 B)', '');
    out.push('Rows measured on several fresh servers give the median MB/s and seconds, each run\'s MB/s, and the highest peak memory of the runs.', '');
    out.push('| target | data | body sent | op | MB/s | runs, MB/s | seconds | wire MB | server peak RSS MB | read back |', '|---|---|---|---|---:|---|---:|---:|---:|---|');
    for (const l of r.large) {
      out.push(`| ${l.target} | ${l.data} ${f0(l.sizeBytes / 2 ** 20)} MiB | ${l.body} | ${l.op} | ${l.error ? `error: ${l.error.replace(/\|/g, '/')}` : f0(l.mbps)} | ${l.runsMbps ? l.runsMbps.map(f0).join(', ') : '-'} | ${f2(l.seconds)} | ${f1(mbOf(l.wireBytes))} | ${f0(mbOf(l.peakRssBytes))}${l.peakPssBytes ? ` (PSS ${f0(mbOf(l.peakPssBytes))})` : ''} | ${l.verified === null ? '-' : l.verified ? 'ok' : '**mismatch**'} |`);
    }
    out.push('');
  }

  if (r.dedup) {
    const d = r.dedup;
    const restic = typeof d.restic === 'string' ? null : d.restic;
    out.push(`## Deduplication: ${d.releases.length} successive releases, one uncompressed tar each (${f1(mbOf(d.logicalBytes))} MB in all)`, '');
    out.push(`Releases: ${d.releases.map((x) => `${x.version} (${f1(mbOf(x.size))} MB)`).join(', ')}.`, '');
    out.push('| store | stored MB | vs restic | vs whole-file+gzip | objects | of which blocks | blocks per file | metadata MB | upload MB/s |', '|---|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const c of d.chunkers) {
      out.push(`| s3dedup, chunker min/avg/max ${c.params.minSize / 1024}/${c.params.avgSize / 1024}/${c.params.maxSize / 1024} KiB | ${f1(mbOf(c.storedBytes))} | ${restic ? f2(c.storedBytes / restic.storedBytes) : '-'} | ${f2(c.storedBytes / d.wholeFile.gzipBytes)} | ${c.objects} | ${c.blockObjects} | ${f0(c.blocksPerFile)} | ${f2(mbOf(c.metadataBytes))} | ${f0(c.putMbps)} |`);
    }
    if (restic) out.push(`| ${restic.version}, repository v2, compression auto | ${f1(mbOf(restic.storedBytes))} | 1.00 | ${f2(restic.storedBytes / d.wholeFile.gzipBytes)} | ${restic.objects} | - | - | - | ${f0(mbOf(d.logicalBytes) / restic.seconds)} |`);
    else out.push(`| restic | ${d.restic} | | | | | | | |`);
    out.push(`| whole-file dedup + gzip -6 (${d.wholeFile.distinctFiles} distinct files) | ${f1(mbOf(d.wholeFile.gzipBytes))} | ${restic ? f2(d.wholeFile.gzipBytes / restic.storedBytes) : '-'} | 1.00 | ${d.wholeFile.distinctFiles} | - | 1 | - | - |`);
    out.push(`| whole-file dedup, uncompressed | ${f1(mbOf(d.wholeFile.rawBytes))} | ${restic ? f2(d.wholeFile.rawBytes / restic.storedBytes) : '-'} | ${f2(d.wholeFile.rawBytes / d.wholeFile.gzipBytes)} | ${d.wholeFile.distinctFiles} | - | 1 | - | - |`);
    out.push('');
    out.push('Stored MB after each release (cumulative):', '');
    out.push(`| store | ${d.releases.map((x) => x.version).join(' | ')} |`, `|---|${d.releases.map(() => '---:').join('|')}|`);
    for (const c of d.chunkers) out.push(`| s3dedup ${c.label} | ${c.growth.map((g) => f1(mbOf(g))).join(' | ')} |`);
    if (restic) out.push(`| restic | ${restic.growth.map((g) => f1(mbOf(g))).join(' | ')} |`);
    out.push('');
  }

  if (r.limits) {
    out.push('## Physical limits on this machine (each stage alone; one core unless noted)', '', '| stage | MB/s | note |', '|---|---:|---|');
    for (const l of r.limits.limits) out.push(`| ${l.stage} | ${f0(l.mbps)} | ${l.note ?? ''} |`);
    out.push('', '| derived bound | MB/s |', '|---|---:|');
    for (const [k, v] of Object.entries(r.limits.bounds)) out.push(`| ${k} | ${f0(v)} |`);
    out.push('');
  }

  if (r.profiles.length) {
    out.push('## CPU profiles of the server (node --cpu-prof)', '');
    out.push('The server runs the same source compiled with tsc (bench/.cache/dist), so locations are lines of the compiled .js, which follow the .ts closely. A profile samples the main thread only: "busy" below 100% while the load is on means the event loop waited, on the libuv pool (zlib, fs) or on I/O. Each large-file profile covers server start, one PUT and shutdown.', '');
    for (const p of r.profiles) out.push(profileMarkdown(p.title, p.summary));
  }

  out.push('## Method', '');
  out.push(
    '- Everything runs on this machine over loopback: the servers, moto_server as the S3 endpoint, wrk (one thread) as the small-file load generator, and curl for the timed large-file requests (a Node client in its own process reads the s3dedup answers back to check them, untimed).',
    '- Small files: each PUT stores a new path and a content new to the server (the next of a pool of distinct 4 KiB text files, compressed with gzip -9; a PUT of a content already stored would skip its compression and write), sent with SHA256-Checksum and Logical-Size as the Filetracker client does, the version in `?last_modified=`. GETs read random files among those stored before the run. A warm-up run precedes each series.',
    `- Large files: random bytes are sent plain (the client with compress_hint=False), text as gzip -9 with hints. MB/s counts logical bytes. The rows the large-file targets are checked on (${[MAIN, MAIN_S3, DIRECT_S3, RELAY_S3].join(', ')}) are measured on ${r.settings.largeRuns ?? 1} fresh servers each (a PUT must bring content new to its server) and give the median; one sample of a 256 MiB transfer varies by 20-30% on a small VM. Peak RSS: s3dedup is one process, its VmHWM is reset before each request (/proc/PID/clear_refs); multi-process servers (s3dedup with WORKERS > 1, Filetracker's gunicorn master + gevent workers) and moto are sampled every 100 ms as the summed RSS of their process tree and, beside it, the summed PSS (/proc/PID/smaps_rollup), which counts a page shared by several processes once.`,
    '- Direct S3: the same requests sent to moto with plain HTTP (no signing cost, moto does not check signatures), so the proxy overhead ratio is conservative.',
    `- ${RELAY_S3}: the same requests through a bare Node HTTP relay in front of moto (bench/lib/relay.ts: method, headers and body piped both ways, nothing else), the floor of the proxy overhead on this machine: the extra loopback hop costs the relay about what sending the bytes costs moto, on the same two cores.`,
    '- Dedup: stored bytes are the apparent sizes of all blob files (blocks, maps, descriptor) plus the SQLite file with its WAL; restic is `du -sb` of the repository (apparent bytes); whole-file dedup sums `gzip -6` of the distinct tars. Blocks per file is computed with the same FastCDC code on the tars.',
    '',
  );
  return out.join('\n');
}
