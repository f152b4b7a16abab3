// `npm run bench [-- --quick] [--only small,large,dedup,limits,profile] [--skip ...]`
//
// Starts everything itself on loopback (s3dedup servers in each configuration of the matrix,
// moto_server as the S3 endpoint, the original Python Filetracker, PostgreSQL when the build
// supports it), measures small-file and large-file load, deduplication against restic and
// whole-file gzip, the physical limits of the codec stages, and CPU profiles of the server; then
// writes bench/results/<date>-<commit>.md and .json and bench/results/latest.md (a --quick run
// writes under bench/results/tmp/, which git ignores). See bench/README.md.
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { largeFile } from './lib/data.js';
import { datasetSpec, datasetTars } from './lib/dataset.js';
import { chunkerConfigs, measureRestic, measureS3dedup, measureWholeFile, type DedupResult } from './lib/dedup.js';
import { ensureFiletrackerDeps, filetrackerSource } from './lib/filetracker.js';
import { largeFileSeries, mergeRuns, type LargeCase, type LargeRow } from './lib/largefiles.js';
import { measureLimits } from './lib/limits.js';
import { startMoto, type Moto } from './lib/moto.js';
import { startPostgres, type Postgres } from './lib/postgres.js';
import { findProfiles, summarizeProfile, type ProfileSummary } from './lib/profile.js';
import { computeChecks, DIRECT_S3, FT, MAIN, MAIN_S3, MAIN_WORKERS, RELAY_S3, toMarkdown, type BenchResults, type Unavailable } from './lib/report.js';
import { alternatingRounds, bodyPool, prepopulate, smallFileSeries, type AlternatingRow, type SmallRow } from './lib/smallfiles.js';
import { BENCH_DIR, CACHE_DIR, commitId, ensureTool, installCleanup, machineInfo, procMemory } from './lib/sys.js';
import { compiledCli } from './lib/s3dedup.js';
import { postgresSupported, startTarget, type TargetDeps, type TargetSpec } from './lib/targets.js';
import { runWrk } from './lib/wrk.js';
import { defaultDeflaterName } from '../src/store/segment.js';
import { SERVER_NODE_FLAGS } from '../src/node-flags.js';

const SECTIONS = ['limits', 'small', 'large', 'dedup', 'profile'] as const;
type Section = (typeof SECTIONS)[number];

const { values: opts } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    skip: { type: 'string' },
    duration: { type: 'string' },
    tsx: { type: 'boolean', default: false },
    rows: { type: 'string' },
    render: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
});
if (opts.help) {
  process.stdout.write(
    'usage: npm run bench -- [--quick] [--only limits,small,large,dedup,profile] [--skip ...] [--duration SECONDS] [--rows TEXT,...] [--tsx]\n' +
      '  --rows: only the rows of the matrix whose name contains one of these texts (e.g. --rows sqlite+local,Filetracker)\n' +
      '  --tsx: run the s3dedup servers from src/ through tsx instead of the tsc build `npm start` runs\n' +
      '  --render FILE.json: measure nothing; recompute the checks and rewrite FILE.md from a saved run\n' +
      'env: FILETRACKER_SRC (Filetracker checkout), BENCH_DATASET (pkg@v1,v2,...), DATABASE_URL (PostgreSQL to use)\n',
  );
  process.exit(0);
}
const quick = opts.quick;
const pick = (list: string | undefined) => new Set((list ?? '').split(',').map((s) => s.trim()).filter(Boolean));
const only = pick(opts.only);
const skip = pick(opts.skip);
for (const s of [...only, ...skip]) if (!SECTIONS.includes(s as Section)) throw new Error(`unknown section ${s}; sections: ${SECTIONS.join(', ')}`);
const enabled = (s: Section) => (only.size === 0 || only.has(s)) && !skip.has(s);
const rowFilter = (opts.rows ?? '').split(',').map((s) => s.trim()).filter(Boolean);
/** A partial run (fewer sections or rows, or a non-default build) is written under results/tmp/. */
const partialRun = quick || opts.tsx || only.size > 0 || skip.size > 0 || rowFilter.length > 0;

const S = quick
  ? { connections: [1, 16, 64], durationS: 2, warmupS: 1, getFiles: 200, pool: 65_536, alternatingRounds: 2, alternatingS: 2, largeMiB: 32, largeRuns: 1, releases: 3, chunkAvgKiB: [64, 128, 256], limitsMiB: 16, limitsRuns: 1, profileS: 3 }
  : { connections: [1, 16, 64], durationS: 10, warmupS: 3, getFiles: 2000, pool: 262_144, alternatingRounds: 5, alternatingS: 5, largeMiB: 256, largeRuns: 3, releases: 10, chunkAvgKiB: [64, 128, 256], limitsMiB: 64, limitsRuns: 3, profileS: 10 };
if (opts.duration) S.durationS = Number(opts.duration);

const FULL_MATRIX: TargetSpec[] = [
  { name: MAIN, kind: 's3dedup', meta: 'sqlite', blobs: 'local' },
  // One worker process per core (WORKERS=2 on the 2-core machine the targets are set for).
  { name: MAIN_WORKERS, kind: 's3dedup', meta: 'sqlite', blobs: 'local', env: { WORKERS: '2' } },
  { name: MAIN_S3, kind: 's3dedup', meta: 'sqlite', blobs: 's3' },
  // What extents buy on S3: one object (one request) per block, the layout before them.
  { name: `${MAIN_S3}, EXTENT_BYTES=0`, kind: 's3dedup', meta: 'sqlite', blobs: 's3', env: { EXTENT_BYTES: '0' }, largeOnly: true },
  // Extents on the local packed store, off by default there.
  { name: `${MAIN}, EXTENT_BYTES=8388608`, kind: 's3dedup', meta: 'sqlite', blobs: 'local', env: { EXTENT_BYTES: '8388608' }, largeOnly: true },
  { name: 's3dedup postgres+local', kind: 's3dedup', meta: 'postgres', blobs: 'local' },
  { name: 's3dedup postgres+s3', kind: 's3dedup', meta: 'postgres', blobs: 's3' },
  { name: FT, kind: 'filetracker' },
  { name: DIRECT_S3, kind: 's3' },
  // The floor of any Node proxy in front of that endpoint: one extra loopback hop, nothing else.
  { name: RELAY_S3, kind: 'relay', largeOnly: true },
];
/** Rows whose large-file results a target is checked on: measured S.largeRuns times, on fresh servers. */
const LARGE_CHECKED = [MAIN, MAIN_S3, DIRECT_S3, RELAY_S3];
const MATRIX = rowFilter.length ? FULL_MATRIX.filter((m) => rowFilter.some((r) => m.name.includes(r))) : FULL_MATRIX;
if (MATRIX.length === 0) throw new Error(`--rows ${opts.rows} matches no row; rows: ${FULL_MATRIX.map((m) => m.name).join('; ')}`);

const started = Date.now();
const log = (s: string) => console.log(`[bench ${((Date.now() - started) / 1000).toFixed(0).padStart(4)}s] ${s}`);
const errMsg = (err: unknown) => (err instanceof Error ? err.message : String(err)).split('\n')[0];

async function main(): Promise<void> {
  installCleanup();
  // Scratch space (data directories of every server) on the repository's disk, not /tmp: on the
  // machines this was written on, creating a file under /tmp costs about 1 ms of kernel CPU
  // (30 us elsewhere on the same disk), which would make every small PUT a test of /tmp.
  const scratchRoot = process.env.BENCH_SCRATCH ?? join(CACHE_DIR, 'scratch');
  mkdirSync(scratchRoot, { recursive: true });
  const tmp = mkdtempSync(join(scratchRoot, 'run-'));
  const outDir = partialRun ? join(BENCH_DIR, 'results', 'tmp') : join(BENCH_DIR, 'results');
  const profDir = join(BENCH_DIR, 'results', 'tmp', 'profiles');
  mkdirSync(outDir, { recursive: true });
  log(`${quick ? 'quick' : 'full'} run; sections: ${SECTIONS.filter(enabled).join(', ')}; scratch ${tmp}`);

  const needLoad = enabled('small') || enabled('large') || enabled('profile');
  if (enabled('small') || enabled('profile')) await ensureTool('wrk', 'wrk', log);
  if (enabled('large')) await ensureTool('curl', 'curl', log);
  if (enabled('dedup')) await ensureTool('restic', 'restic', log).catch((e) => log(`restic unavailable: ${errMsg(e)}`));

  const { commit, dirty } = await commitId();
  const machine = await machineInfo();
  const loadAtStart = loadavg();
  const unavailable: Unavailable[] = [];
  const peers: Record<string, string> = {};
  const small: SmallRow[] = [];
  const smallPeakRss: Record<string, number> = {};
  const smallPeakPss: Record<string, number> = {};
  const idleRss: Record<string, number> = {};
  let large: LargeRow[] = [];
  let alternating: AlternatingRow[] | undefined;
  const profiles: Array<{ title: string; summary: ProfileSummary }> = [];
  let dedup: DedupResult | undefined;
  let limits: BenchResults['limits'];

  // The physical limits first, while nothing else runs.
  if (enabled('limits')) {
    log(`measuring the codec stages alone on ${S.limitsMiB} MiB`);
    limits = await measureLimits(S.limitsMiB << 20, S.limitsRuns);
    for (const l of limits.limits) log(`  ${l.stage}: ${l.mbps.toFixed(0)} MB/s ${l.note ?? ''}`);
  }

  let moto: Moto | undefined;
  let pg: Postgres | undefined;
  try {
    if (needLoad) {
      try {
        moto = await startMoto(tmp);
        peers['S3 endpoint'] = `moto_server ${machine.tools.moto} at ${moto.endpoint}`;
      } catch (err) {
        for (const spec of MATRIX.filter((m) => m.blobs === 's3' || m.kind === 's3' || m.kind === 'relay')) unavailable.push({ target: spec.name, reason: errMsg(err) });
      }
    }
    const deps: TargetDeps = { tmp, moto };
    // The servers run the tsc build, as `npm start` does, unless --tsx asks for the source.
    if (!opts.tsx) deps.compiledMain = await compiledCli(log);
    let pgRefusal: string | null = null;
    if ((enabled('small') || enabled('large')) && MATRIX.some((m) => m.meta === 'postgres')) {
      const support = await postgresSupported(tmp);
      if (support !== true) pgRefusal = `not available in this build (the server refuses KVSTORAGE_TYPE=postgres: ${support})`;
      else
        deps.postgres = async () => {
          pg ??= await startPostgres(log);
          peers.PostgreSQL = `${pg.host}:${pg.port}`;
          return pg;
        };
    }
    if (enabled('small') || enabled('large')) {
      try {
        await ensureFiletrackerDeps(log);
        const src = await filetrackerSource(tmp, log);
        if (typeof src === 'string') throw new Error(src);
        deps.filetracker = src;
        peers.Filetracker = `${src.origin}, gunicorn + gevent workers (2 x CPUs) on local disk`;
      } catch (err) {
        unavailable.push({ target: FT, reason: `skipped: ${errMsg(err)}` });
      }
    }

    // Small and large files, one server per row of the matrix.
    if (enabled('small') || enabled('large')) {
      const pool = enabled('small') ? bodyPool(CACHE_DIR, S.pool) : undefined;
      const size = S.largeMiB << 20;
      const cases: LargeCase[] = enabled('large')
        ? [
            { data: 'random', body: 'plain', file: await largeFile(CACHE_DIR, 'random', size, false, log) },
            { data: 'text', body: 'gzip', file: await largeFile(CACHE_DIR, 'text', size, true, log) },
          ]
        : [];
      for (const spec of MATRIX) {
        if (unavailable.some((u) => u.target === spec.name)) continue;
        if (spec.largeOnly && !cases.length) continue;
        if (spec.blobs === 's3' && !moto) {
          unavailable.push({ target: spec.name, reason: 'no S3 endpoint (moto_server did not start)' });
          continue;
        }
        if (spec.meta === 'postgres' && pgRefusal) {
          unavailable.push({ target: spec.name, reason: pgRefusal });
          continue;
        }
        log(`== ${spec.name}`);
        let t;
        try {
          t = await startTarget(spec, deps);
        } catch (err) {
          unavailable.push({ target: spec.name, reason: `could not start: ${errMsg(err)}` });
          continue;
        }
        idleRss[spec.name] = t.memory === 'hwm' ? (procMemory(t.pid)?.rss ?? 0) : 0;
        try {
          if (pool && !spec.largeOnly) {
            const res = await smallFileSeries(t, pool, { connections: S.connections, durationS: S.durationS, warmupS: S.warmupS, getFiles: S.getFiles, log });
            small.push(...res.rows);
            smallPeakRss[spec.name] = res.peak.rss;
            if (res.peak.pss !== null) smallPeakPss[spec.name] = res.peak.pss;
          }
          if (cases.length) large.push(...(await largeFileSeries(t, cases, log)));
          // The rows a large-file target is checked on run again on fresh servers (a PUT must
          // store a content new to its server); the report gives the median (mergeRuns).
          const runs = cases.length && LARGE_CHECKED.includes(spec.name) ? S.largeRuns : 1;
          for (let run = 2; run <= runs; run++) {
            await t.stop();
            log(`== ${spec.name}, large files, run ${run} of ${runs} (fresh server)`);
            t = await startTarget(spec, deps);
            large.push(...(await largeFileSeries(t, cases, log)));
          }
        } catch (err) {
          unavailable.push({ target: spec.name, reason: `failed during the run: ${errMsg(err)}` });
          log(`${spec.name} failed: ${(err as Error).stack ?? err}`);
        } finally {
          await t.stop();
        }
      }
      large = mergeRuns(large);

      // The small-file ratios again, in turns that alternate between the two servers.
      const pair = [MAIN, FT].map((name) => MATRIX.find((m) => m.name === name));
      if (pool && pair.every((m) => m && !unavailable.some((u) => u.target === m.name))) {
        log(`== ${MAIN} and ${FT}, ${S.alternatingRounds} alternating rounds of ${S.alternatingS} s`);
        const targets: Array<Awaited<ReturnType<typeof startTarget>>> = [];
        try {
          for (const spec of pair) targets.push(await startTarget(spec!, deps));
          alternating = await alternatingRounds(targets, pool, { rounds: S.alternatingRounds, durationS: S.alternatingS, warmupS: S.warmupS, getFiles: S.getFiles, log });
        } catch (err) {
          unavailable.push({ target: 'alternating rounds', reason: errMsg(err) });
        } finally {
          for (const t of targets) await t.stop();
        }
      }
    }

    // Profiles of the main configuration: one small-file PUT load, large PUTs.
    if (enabled('profile')) {
      rmSync(profDir, { recursive: true, force: true });
      const profile = async (title: string, dir: string, load: (url: string, target: Awaited<ReturnType<typeof startTarget>>) => Promise<void>) => {
        const t = await startTarget({ name: MAIN, kind: 's3dedup', meta: 'sqlite', blobs: 'local' }, { ...deps, cpuProfDir: dir });
        // Let start-up finish before the load, so the profile shows the load.
        await new Promise((r) => setTimeout(r, 500));
        try {
          await load(t.url, t);
        } finally {
          await t.stop();
        }
        const files = findProfiles(dir);
        if (!files.length) throw new Error(`no .cpuprofile written in ${dir}`);
        profiles.push({ title, summary: summarizeProfile(files[0]) });
        log(`profile "${title}": ${files[0]}`);
      };
      try {
        // Profiles always use the tsc build: its frames carry real line numbers.
        deps.compiledMain ??= await compiledCli(log);
        const pool = bodyPool(CACHE_DIR, S.pool);
        await profile(`small-file PUT, 16 connections, ${S.profileS} s`, join(profDir, 'small-put'), async (url, t) => {
          await runWrk({ url, script: 'put.lua', scriptArgs: [t.path('bench/put'), 'prof', pool.path, '0', t.putQuery, 'ft', ''], connections: 16, durationS: S.profileS, threads: 1 });
        });
        await profile(`small-file GET, 16 connections, ${S.profileS} s (${S.getFiles} files stored first)`, join(profDir, 'small-get'), async (url, t) => {
          await prepopulate(t, pool, 'bench/get', S.getFiles);
          await runWrk({ url, script: 'get.lua', scriptArgs: [t.path('bench/get'), String(S.getFiles), ''], connections: 16, durationS: S.profileS, threads: 1 });
        });
        const size = S.largeMiB << 20;
        for (const c of [
          { data: 'random', body: 'plain', file: await largeFile(CACHE_DIR, 'random', size, false, log) },
          { data: 'text', body: 'gzip', file: await largeFile(CACHE_DIR, 'text', size, true, log) },
        ] as LargeCase[]) {
          await profile(`large PUT, ${S.largeMiB} MiB ${c.data} (${c.body} body)`, join(profDir, `large-${c.data}`), async (_url, t) => {
            const rows = await largeFileSeries(t, [c], log, { putOnly: true });
            if (rows.some((r) => r.error)) throw new Error(rows.find((r) => r.error)!.error);
          });
        }
      } catch (err) {
        unavailable.push({ target: 'CPU profiles', reason: errMsg(err) });
      }
    }
  } finally {
    await moto?.stop().catch(() => undefined);
    await pg?.stop().catch(() => undefined);
  }

  // Deduplication on real release tars.
  if (enabled('dedup')) {
    try {
      const spec = datasetSpec();
      const releases = await datasetTars(CACHE_DIR, spec.pkg, spec.versions.slice(0, S.releases), log);
      const chunkers = [];
      for (const c of chunkerConfigs(S.chunkAvgKiB.map((k) => k * 1024))) chunkers.push(await measureS3dedup(tmp, releases, c.label, c.params, log));
      let restic: DedupResult['restic'];
      try {
        restic = await measureRestic(tmp, releases, log);
      } catch (err) {
        restic = `not measured: ${errMsg(err)}`;
      }
      dedup = {
        releases: releases.map((r) => ({ version: `${r.pkg}@${r.version}`, size: r.size })),
        logicalBytes: releases.reduce((n, r) => n + r.size, 0),
        chunkers,
        restic,
        wholeFile: await measureWholeFile(CACHE_DIR, releases),
      };
    } catch (err) {
      unavailable.push({ target: 'dedup', reason: errMsg(err) });
      log(`dedup failed: ${(err as Error).stack}`);
    }
  }

  const date = new Date().toISOString();
  const partial: Omit<BenchResults, 'checks'> = {
    date,
    commit,
    dirty,
    mode: quick ? 'quick' : 'full',
    machine,
    settings: { ...S, sections: SECTIONS.filter(enabled), server: opts.tsx ? 'node --import tsx src/cli/main.ts' : `tsc build (node ${SERVER_NODE_FLAGS.join(' ')} dist/src/cli/main.js, as npm start)`, deflate: defaultDeflaterName, rows: MATRIX.map((m) => m.name) },
    peers,
    small,
    alternating,
    smallPeakRss,
    smallPeakPss,
    idleRss,
    large,
    dedup,
    limits,
    profiles,
    unavailable,
    durationS: (Date.now() - started) / 1000,
    loadAverage: { start: loadAtStart, end: loadavg() },
  };
  const results: BenchResults = { ...partial, checks: computeChecks(partial) };
  const stamp = `${date.slice(0, 19).replace(/:/g, '-')}Z-${commit}${quick ? '-quick' : ''}${opts.tsx ? '-tsx' : ''}`;
  const md = toMarkdown(results);
  writeFileSync(join(outDir, `${stamp}.md`), md);
  writeFileSync(join(outDir, `${stamp}.json`), `${JSON.stringify(results, null, 2)}\n`);
  if (!partialRun) copyFileSync(join(outDir, `${stamp}.md`), join(outDir, 'latest.md'));
  rmSync(tmp, { recursive: true, force: true });
  console.log(`\n${md}`);
  log(`results: ${join(outDir, `${stamp}.md`)} and .json`);
}

/** Rewrites the Markdown (and the checks in the JSON) of a saved run with the current report code. */
function render(jsonPath: string): void {
  const saved = JSON.parse(readFileSync(jsonPath, 'utf8')) as BenchResults;
  const results: BenchResults = { ...saved, checks: computeChecks(saved) };
  const mdPath = jsonPath.replace(/\.json$/, '.md');
  writeFileSync(jsonPath, `${JSON.stringify(results, null, 2)}\n`);
  writeFileSync(mdPath, toMarkdown(results));
  log(`rewrote ${mdPath} and its checks in ${jsonPath}`);
}

(opts.render ? Promise.resolve().then(() => render(opts.render!)) : main()).then(
  () => process.exit(0),
  (err) => {
    console.error(`[bench] failed: ${(err as Error).stack ?? err}`);
    process.exit(1);
  },
);

