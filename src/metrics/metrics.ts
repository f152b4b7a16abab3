// Prometheus instruments of one s3dedup process, on a registry of its own (not prom-client's
// global one) so tests can build several apps side by side without "already registered" errors.
//
// The core records through the small record* functions below; they default to the process-wide
// `metrics` instance that the server exposes on GET /metrics. Label values are always drawn from
// small fixed sets (route patterns, hit/miss, ...) so the series count stays bounded.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Seconds: from a quick metadata hit up to a multi-GB upload. */
const HTTP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
/** Seconds: uncontended (~0) up to the default LOCK_TIMEOUT_MS (30 s). */
const LOCK_BUCKETS = [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30];

export type CleanerRunResult = 'success' | 'error' | 'skipped';

export interface Metrics {
  registry: Registry;
  httpRequests: Counter<'method' | 'route' | 'status'>;
  httpDuration: Histogram<'method' | 'route'>;
  dedupBlocks: Counter<'result'>;
  dedupBytesLogical: Counter;
  dedupBytesStored: Counter;
  cleanerRuns: Counter<'result'>;
  cleanerDeleted: Counter<'kind'>;
  lockWait: Histogram;
  lockTimeouts: Counter;
  fileCacheLookups: Counter<'result'>;
  blobSpace: Gauge<'kind'>;
  /** where blob_store_bytes is read from on each scrape (watchBlobSpace); none: not reported */
  blobSpaceSource?: SpaceSource;
}

/** What a blob store that keeps space until compaction reports (the packed local store). */
export interface SpaceSource {
  stats(): { packs: number; bytes: number; live: number };
}

export interface CreateMetricsOptions {
  /** Register prom-client's process metrics (CPU, memory, event loop, GC). Default true. */
  defaultMetrics?: boolean;
}

/**
 * A fresh registry with every s3dedup instrument on it.
 *
 * @example
 * const m = createMetrics({ defaultMetrics: false });
 * recordUpload({ logicalBytes: 10, storedBytesWritten: 4, blocksWritten: 1, blocksReused: 0 }, m);
 * await m.registry.metrics(); // Prometheus text
 */
export function createMetrics(options: CreateMetricsOptions = {}): Metrics {
  const registry = new Registry();
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });
  const registers = [registry];
  const m: Metrics = {
    registry,
    httpRequests: new Counter({
      name: 'http_requests_total',
      help: 'HTTP requests answered, by method, route pattern and status code',
      labelNames: ['method', 'route', 'status'] as const,
      registers,
    }),
    httpDuration: new Histogram({
      name: 'http_request_duration_seconds',
      help: 'Time until the response headers are ready (a download body may stream for longer), by method and route pattern',
      labelNames: ['method', 'route'] as const,
      buckets: HTTP_BUCKETS,
      registers,
    }),
    dedupBlocks: new Counter({
      name: 'dedup_blocks_total',
      help: 'Blocks of uploaded files: hit = already stored (not written), miss = written',
      labelNames: ['result'] as const,
      registers,
    }),
    dedupBytesLogical: new Counter({
      name: 'dedup_bytes_logical_total',
      help: 'Uncompressed bytes of uploaded files',
      registers,
    }),
    dedupBytesStored: new Counter({
      name: 'dedup_bytes_stored_total',
      help: 'Bytes of block segments actually written to the blob store by uploads',
      registers,
    }),
    cleanerRuns: new Counter({
      name: 'cleaner_runs_total',
      help: 'Cleaner runs by result (success, error, skipped)',
      labelNames: ['result'] as const,
      registers,
    }),
    cleanerDeleted: new Counter({
      name: 'cleaner_deleted_total',
      help: 'Objects the cleaner deleted: block = unreferenced block, map = unreferenced content map, orphan = object no metadata named',
      labelNames: ['kind'] as const,
      registers,
    }),
    lockWait: new Histogram({
      name: 'lock_wait_seconds',
      help: 'Time spent waiting to acquire path/content locks (including waits that timed out)',
      buckets: LOCK_BUCKETS,
      registers,
    }),
    lockTimeouts: new Counter({
      name: 'lock_timeouts_total',
      help: 'Lock acquisitions that gave up after LOCK_TIMEOUT_MS',
      registers,
    }),
    fileCacheLookups: new Counter({
      name: 'file_cache_lookups_total',
      help: 'SQLite file lookups of GET and HEAD: hit = answered from memory (FILE_CACHE_SIZE), miss = read from the database',
      labelNames: ['result'] as const,
      registers,
    }),
    blobSpace: new Gauge({
      name: 'blob_store_bytes',
      help: 'Bytes in the local store\'s pack files (kind=packed), of which objects still in use (kind=live); the rest is freed by compaction',
      labelNames: ['kind'],
      registers,
      // Every worker reads the same store-wide numbers: the sum over workers would count them N times.
      aggregator: 'max',
      collect() {
        if (!m.blobSpaceSource) return;
        try {
          const { bytes, live } = m.blobSpaceSource.stats();
          this.set({ kind: 'packed' }, bytes);
          this.set({ kind: 'live' }, live);
        } catch {
          // A closed or failing index: keep the last values; /health reports the failure.
        }
      },
    }),
  };
  return m;
}

/**
 * Makes `m` report the space of `store` on every scrape.
 *
 * @example
 * watchBlobSpace(packedStore); // blob_store_bytes{kind="packed"} and {kind="live"}
 */
export function watchBlobSpace(store: SpaceSource, m: Metrics = metrics): void {
  m.blobSpaceSource = store;
}

/** The process-wide instruments, exposed by the server on GET /metrics. */
export const metrics: Metrics = createMetrics();

export interface UploadStats {
  /** uncompressed bytes of the uploaded file */
  logicalBytes: number;
  /** bytes of the block segments this upload wrote (0 when every block was already stored) */
  storedBytesWritten: number;
  /** blocks this upload wrote (dedup misses) */
  blocksWritten: number;
  /** blocks this upload found already stored and did not write (dedup hits) */
  blocksReused: number;
}

/**
 * Records one finished upload.
 *
 * @example
 * recordUpload({ logicalBytes: 1_048_576, storedBytesWritten: 65_536, blocksWritten: 1, blocksReused: 7 });
 */
export function recordUpload(s: UploadStats, m: Metrics = metrics): void {
  m.dedupBytesLogical.inc(nonNegative(s.logicalBytes));
  m.dedupBytesStored.inc(nonNegative(s.storedBytesWritten));
  m.dedupBlocks.inc({ result: 'hit' }, nonNegative(s.blocksReused));
  m.dedupBlocks.inc({ result: 'miss' }, nonNegative(s.blocksWritten));
}

export interface CleanerRunStats {
  /** success: the run finished; error: it stopped on an error; skipped: another instance was running it */
  result: CleanerRunResult;
  /** blocks deleted (blob and row), also when the run later failed */
  blocksDeleted?: number;
  /** content maps deleted (blob and row) */
  mapsDeleted?: number;
  /** objects deleted that no metadata named (full scan) */
  orphansDeleted?: number;
}

/**
 * Records one cleaner run and what it deleted.
 *
 * @example
 * recordCleanerRun({ result: 'success', blocksDeleted: 12, mapsDeleted: 3 });
 */
export function recordCleanerRun(s: CleanerRunStats, m: Metrics = metrics): void {
  m.cleanerRuns.inc({ result: s.result });
  // inc(0) still creates the series, so dashboards see all three kinds from the first run.
  m.cleanerDeleted.inc({ kind: 'block' }, nonNegative(s.blocksDeleted ?? 0));
  m.cleanerDeleted.inc({ kind: 'map' }, nonNegative(s.mapsDeleted ?? 0));
  m.cleanerDeleted.inc({ kind: 'orphan' }, nonNegative(s.orphansDeleted ?? 0));
}

/** Records the file lookups of one batch: how many the cache answered, how many read the database. */
export function recordFileCacheLookups(hits: number, misses: number, m: Metrics = metrics): void {
  if (hits > 0) m.fileCacheLookups.inc({ result: 'hit' }, hits);
  if (misses > 0) m.fileCacheLookups.inc({ result: 'miss' }, misses);
}

/**
 * Records one lock acquisition: how long it waited (seconds) and whether it gave up.
 *
 * @example
 * const t0 = performance.now();
 * // ... acquire ...
 * recordLockWait((performance.now() - t0) / 1000, false);
 */
export function recordLockWait(seconds: number, timedOut: boolean, m: Metrics = metrics): void {
  m.lockWait.observe(nonNegative(seconds));
  if (timedOut) m.lockTimeouts.inc();
}

/** Counters reject negative increments by throwing; a metrics call must never fail a request. */
function nonNegative(v: number): number {
  return Number.isFinite(v) && v > 0 ? v : 0;
}
