// WORKERS > 1: a primary process forks that many server processes, which share the listening
// socket (node:cluster hands each new connection to the next worker). The primary serves no
// requests and never opens the store (so it stays a small process): worker 0 starts first and
// alone runs the migrations and the descriptor check, then the others start. The primary
// replaces a worker that dies, gathers /metrics from all workers, and on SIGTERM/SIGINT stops
// them all gracefully.
//
// Why processes need no shared memory: every metadata change is one database transaction (on
// SQLite one that takes the write lock at BEGIN IMMEDIATE; on PostgreSQL WORKERS > 1 requires
// LOCKS_TYPE=postgres), and the commit guard against the cleaner lives in the database
// (docs/gc.md). Blocks are immutable, so each worker's block cache stays valid. Only worker 0
// runs the cleaner's schedule.
import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, type Registry } from 'prom-client';
import type { Config } from './config/config.js';
import { moduleLogger } from './log.js';
import { flagOption, SERVER_NODE_FLAGS, WORKER_NODE_FLAGS } from './node-flags.js';

const WORKER_ENV = 'S3DEDUP_WORKER_INDEX';
/** How long the primary waits for the workers' metrics before answering with those it has. */
const METRICS_TIMEOUT_MS = 2_000;
/** Delay before a worker that died is replaced (a crash loop then costs little). */
const RESPAWN_DELAY_MS = 1_000;
/**
 * The node flags a worker starts with: the primary's own, then those of SERVER_NODE_FLAGS and
 * WORKER_NODE_FLAGS whose option the operator did not set already (in the primary's flags or in
 * NODE_OPTIONS, in either spelling; `--concurrent-marking` counts against `--no-concurrent-marking`).
 *
 * @example
 * workerExecArgv(['--import', 'tsx'], ''); // ['--import', 'tsx', '--no-concurrent-marking', '--max-semi-space-size=4', '--max-old-space-size=2047']
 */
export function workerExecArgv(execArgv: readonly string[], nodeOptions = ''): string[] {
  const given = new Set([...execArgv, ...nodeOptions.split(/\s+/)].filter((a) => a.startsWith('--')).map(flagOption));
  return [...execArgv, ...[...SERVER_NODE_FLAGS, ...WORKER_NODE_FLAGS].filter((f) => !given.has(flagOption(f)))];
}

/**
 * glibc's malloc threshold for each worker, bytes: buffers this large and larger get pages of
 * their own and give them back to the system when freed. Without it glibc raises the threshold
 * to the size of the first such buffer freed, and from then on a large transfer's 128 KiB
 * blocks come from its heap, whose freed pages it keeps. Two workers through the bench's small
 * and large files: peak summed PSS 284-301 MB in 4 runs against 301-338 in 5, large transfers
 * some 10-15% slower, small files unchanged (bench/README.md, "WORKERS=2 memory and glibc's
 * malloc threshold").
 */
const WORKER_MMAP_THRESHOLD = 131_072;

/**
 * The environment a worker gets beside the primary's: its index, and WORKER_MMAP_THRESHOLD
 * unless the operator set a threshold already.
 */
export function workerEnv(index: number, env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const own = { [WORKER_ENV]: String(index) };
  return env.MALLOC_MMAP_THRESHOLD_ === undefined ? { ...own, MALLOC_MMAP_THRESHOLD_: String(WORKER_MMAP_THRESHOLD) } : own;
}

/** Where GET /metrics reads from: this process's registry, or every worker's through the primary. */
export interface MetricsSource {
  text(): Promise<string>;
  json(): Promise<unknown>;
}

export function localMetrics(registry: Registry): MetricsSource {
  return { text: () => registry.metrics(), json: () => registry.getMetricsAsJSON() };
}

type Message =
  | { s3dedup: 'metrics'; id: number } // worker -> primary: a client asked for /metrics
  | { s3dedup: 'collect'; id: number } // primary -> every worker: send your metrics
  | { s3dedup: 'part'; id: number; metrics: unknown[] } // worker -> primary
  | { s3dedup: 'aggregated'; id: number; text: string; json: unknown }; // primary -> asking worker

const isMessage = (m: unknown): m is Message => typeof m === 'object' && m !== null && 's3dedup' in m;

/** This process's index among the workers, or null when it is not a cluster worker. */
export function workerIndex(): number | null {
  return cluster.isWorker ? Number(process.env[WORKER_ENV] ?? 0) : null;
}

/** A worker's configuration: the cleaner's schedule runs in worker 0 only. */
export function workerConfig(config: Config, index: number): Config {
  return { ...config, cleaner: { ...config.cleaner, enabled: config.cleaner.enabled && index === 0 } };
}

/**
 * In a worker: answers the primary's requests for this process's metrics, and returns the
 * source GET /metrics uses, which asks the primary for the sum over all workers.
 */
export function clusterMetrics(registry: Registry): MetricsSource {
  const waiting = new Map<number, (m: Extract<Message, { s3dedup: 'aggregated' }>) => void>();
  let nextId = 0;
  process.on('message', (msg: unknown) => {
    if (!isMessage(msg)) return;
    if (msg.s3dedup === 'collect') {
      void registry.getMetricsAsJSON().then((metrics) => process.send?.({ s3dedup: 'part', id: msg.id, metrics } satisfies Message));
    } else if (msg.s3dedup === 'aggregated') {
      waiting.get(msg.id)?.(msg);
      waiting.delete(msg.id);
    }
  });
  const ask = () =>
    new Promise<Extract<Message, { s3dedup: 'aggregated' }>>((resolve, reject) => {
      const id = nextId++;
      const timer = setTimeout(() => {
        waiting.delete(id);
        reject(new Error('the primary process did not answer with the metrics'));
      }, METRICS_TIMEOUT_MS * 2);
      waiting.set(id, (m) => {
        clearTimeout(timer);
        resolve(m);
      });
      process.send?.({ s3dedup: 'metrics', id } satisfies Message);
    });
  return { text: async () => (await ask()).text, json: async () => (await ask()).json };
}

export interface Primary {
  /** Stops every worker (each finishes its requests in flight) and resolves when all exited. */
  stop(): Promise<void>;
}

/** In the primary: prepares the store, forks `config.workers` workers and keeps them running. */
export async function startPrimary(config: Config): Promise<Primary> {
  const log = moduleLogger('cluster');

  const workers = new Map<number, Worker>();
  let stopping = false;
  let collectId = 0;

  /** Gathers every worker's metrics and answers the worker that asked. */
  const answerMetrics = (asker: Worker, id: number) => {
    const cid = collectId++;
    const live = [...workers.values()].filter((w) => w.isConnected());
    const parts: unknown[][] = [];
    const finish = () => {
      cluster.removeListener('message', onPart);
      clearTimeout(timer);
      const registry = AggregatorRegistry.aggregate(parts as never);
      void Promise.all([registry.metrics(), registry.getMetricsAsJSON()]).then(([text, json]) => {
        if (asker.isConnected()) asker.send({ s3dedup: 'aggregated', id, text, json } satisfies Message);
      });
    };
    const onPart = (_w: Worker, msg: unknown) => {
      if (!isMessage(msg) || msg.s3dedup !== 'part' || msg.id !== cid) return;
      parts.push(msg.metrics);
      if (parts.length === live.length) finish();
    };
    const timer = setTimeout(finish, METRICS_TIMEOUT_MS);
    cluster.on('message', onPart);
    for (const w of live) w.send({ s3dedup: 'collect', id: cid } satisfies Message);
  };

  cluster.setupPrimary({ execArgv: workerExecArgv(process.execArgv, process.env.NODE_OPTIONS) });
  const fork = (index: number): Worker => {
    const w = cluster.fork(workerEnv(index));
    workers.set(index, w);
    w.on('message', (msg: unknown) => {
      if (isMessage(msg) && msg.s3dedup === 'metrics') answerMetrics(w, msg.id);
    });
    return w;
  };

  // Start-up: every worker must come up listening; if one exits first, the start fails. Worker 0
  // comes up alone first, so the migrations and the descriptor check run in one process.
  const start = (i: number) =>
    new Promise<number>((resolve, reject) => {
      const w = fork(i);
      const onExit = (code: number | null) => reject(new Error(`worker ${i} exited during start-up (code ${code})`));
      w.once('exit', onExit);
      w.once('listening', (address) => {
        w.removeListener('exit', onExit);
        resolve(address.port);
      });
    });
  const port = await start(0)
    .then(async (first) => {
      await Promise.all(Array.from({ length: config.workers - 1 }, (_, i) => start(i + 1)));
      return first;
    })
    .catch((err) => {
      stopping = true;
      for (const w of workers.values()) w.process.kill('SIGKILL');
      throw err;
    });
  log.info(
    { workers: config.workers, address: config.listenAddress, port },
    `s3dedup listening on http://${config.listenAddress}:${port}/ft with ${config.workers} worker processes`,
  );

  cluster.on('exit', (w, code, signal) => {
    const index = [...workers].find(([, x]) => x === w)?.[0];
    if (index === undefined || stopping) return;
    workers.delete(index);
    log.error({ worker: index, pid: w.process.pid, code, signal }, 'worker exited; starting another');
    setTimeout(() => {
      if (!stopping) fork(index);
    }, RESPAWN_DELAY_MS);
  });

  return {
    async stop() {
      stopping = true;
      const exits = [...workers.values()].map(
        (w) =>
          new Promise<void>((resolve) => {
            if (w.process.exitCode !== null || w.process.signalCode !== null) return resolve();
            w.once('exit', () => resolve());
            w.process.kill('SIGTERM');
          }),
      );
      const killer = setTimeout(() => {
        log.warn('workers did not stop within the shutdown grace period; killing them');
        for (const w of workers.values()) w.process.kill('SIGKILL');
      }, config.shutdownGraceMs + 5_000);
      await Promise.all(exits);
      clearTimeout(killer);
      log.info('all workers stopped');
    },
  };
}
