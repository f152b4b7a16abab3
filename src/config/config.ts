// Configuration: the s3dedup JSON config file and environment variables (same names as the
// Rust s3dedup; env overrides the file), validated once at start with one message per wrong
// value.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cronProblem } from '../cleaner/scheduler.js';
import { DEFAULT_FILE_CACHE_SIZE } from '../meta/file-for-read.js';
import { DEFAULT_CHUNKER, validateChunkerParams } from '../store/chunker.js';
import type { FileStoreOptions } from '../store/file-store.js';

/** Server settings; the file store's own (chunker, concurrency, cache, ...) are documented in FileStoreOptions. */
export interface Config extends FileStoreOptions {
  logLevel: string;
  logJson: boolean;
  bucketName: string;
  listenAddress: string;
  listenPort: number;
  kvstorageType: 'sqlite' | 'postgres';
  /** SQLite database file; default `<dataDir>/s3dedup.sqlite` */
  sqlitePath: string;
  sqliteMaxConnections: number;
  /** SQLite: file lookups kept for repeated GETs, counted as 1 + blocks per file; 0 disables */
  fileCacheSize: number;
  postgres: { host: string; port: number; user: string; password: string; db: string; maxConnections: number; schema?: string };
  locksType: 'memory' | 'postgres';
  /** 's3' when an S3 endpoint is configured (or BLOB_STORE=s3), else the local directory */
  blobStore: 's3' | 'local';
  s3: { endpoint?: string; accessKey?: string; secretKey?: string; region: string; forcePathStyle: boolean };
  /** Embedded default's home: the SQLite file and (without S3) the blocks */
  dataDir: string;
  /** fsync each blob written to the local store (slower; survives power loss) */
  localFsync: boolean;
  /** local blob store: append-only pack files (`packs`), one file per object (`files`), or what the directory holds (`auto`) */
  localLayout: 'auto' | 'packs' | 'files';
  /** bytes; kept for s3dedup compatibility (uploads here always stream) */
  maxInmemorySize: number;
  tempDir: string;
  cleaner: {
    enabled: boolean;
    intervalSeconds: number;
    batchSize: number;
    concurrency: number;
    /** cron expression for full scans ('' disables them) */
    fullScanCron: string;
    /** seconds garbage stays after it became unreferenced */
    graceSeconds: number;
    /** seconds acknowledged gc_log rows are kept */
    logRetentionSeconds: number;
  };
  filetrackerUrl?: string;
  filetrackerV1Dir?: string;
  /** ms SIGTERM waits for requests in flight before closing anyway */
  shutdownGraceMs: number;
  /** server processes sharing the port (1: this process serves; more: a primary forks them) */
  workers: number;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;
type Json = Record<string, any>;

/** EXTENT_BYTES on S3: 32 requests per 256 MiB instead of 2048 at 128 KiB blocks (8 MiB). */
export const DEFAULT_S3_EXTENT_BYTES = 8 << 20;

/** Every environment variable the server reads, with what it sets (for docs and --help). */
export const ENV_VARS: Record<string, string> = {
  LOG_LEVEL: 'trace|debug|info|warn|error (info)',
  LOG_JSON: 'true: JSON lines (default); false: same, kept for s3dedup compatibility',
  BUCKET_NAME: 'S3 bucket (default "default")',
  LISTEN_ADDRESS: 'bind address (0.0.0.0)',
  LISTEN_PORT: 'port (8080)',
  KVSTORAGE_TYPE: 'sqlite|postgres (sqlite)',
  SQLITE_PATH: 'SQLite file (<DATA_DIR>/s3dedup.sqlite)',
  SQLITE_MAX_CONNECTIONS: 'accepted for compatibility; SQLite uses one connection',
  POSTGRES_HOST: 'PostgreSQL host', POSTGRES_PORT: 'PostgreSQL port (5432)', POSTGRES_USER: 'PostgreSQL user',
  POSTGRES_PASSWORD: 'PostgreSQL password', POSTGRES_DB: 'PostgreSQL database (s3dedup)', POSTGRES_MAX_CONNECTIONS: 'pool size (10)',
  POSTGRES_SCHEMA: 'schema to use, created if missing (public)',
  LOCKS_TYPE: 'memory|postgres (memory)',
  BLOB_STORE: 's3|local (s3 when S3_ENDPOINT is set, else local)',
  S3_ENDPOINT: 'S3 endpoint URL', S3_ACCESS_KEY: 'access key', S3_SECRET_KEY: 'secret key',
  S3_REGION: 'region (us-east-1)', S3_FORCE_PATH_STYLE: 'path-style addressing (true)',
  DATA_DIR: 'embedded default home (./data)', LOCAL_FSYNC: 'fsync local blobs (false)',
  LOCAL_LAYOUT: 'auto|packs|files: local blobs in pack files or a file each (auto: what DATA_DIR/blobs holds, packs when new)',
  MAX_INMEMORY_SIZE: 'bytes (compatibility; uploads always stream)', TEMP_DIR: 'scratch directory (<DATA_DIR>/tmp)',
  WORKERS: 'server processes sharing the port, e.g. the number of cores (1)',
  CLEANER_ENABLED: 'run the cleaner in the server (true)', CLEANER_INTERVAL: 'seconds between passes (3600)',
  CLEANER_BATCH_SIZE: 'deletions decided per transaction (1000)', CLEANER_CONCURRENCY: 'blob deletions in flight (8)',
  CLEANER_FULL_SCAN_CRON: "cron of full scans for unknown objects and mostly dead extents ('0 3 * * *'; '' = never)",
  CLEANER_GRACE_SECONDS: 'seconds garbage stays after it became unreferenced (3600)',
  CLEANER_LOG_RETENTION: 'seconds the deletion log is kept; longer uploads fail and retry (86400)',
  FILETRACKER_URL: 'old Filetracker for live migration', FILETRACKER_V1_DIR: 'Filetracker v1 directory',
  CHUNK_MIN_SIZE: `bytes (${DEFAULT_CHUNKER.minSize})`, CHUNK_AVG_SIZE: `bytes, power of two (${DEFAULT_CHUNKER.avgSize})`,
  CHUNK_MAX_SIZE: `bytes (${DEFAULT_CHUNKER.maxSize})`,
  UPLOAD_CONCURRENCY: 'blocks in flight per upload (8)', READ_AHEAD: 'blocks fetched ahead per download (16)',
  EXTENT_BYTES: "an upload's new blocks are packed into objects of this size (8388608 on S3, 0 = one object per block locally)",
  COMPRESSION_LEVEL: 'deflate level 1..9 (6)', LOCK_TIMEOUT_MS: 'lock wait before 503 (30000)',
  SHUTDOWN_GRACE_MS: 'SIGTERM wait for requests in flight (30000)',
  BLOCK_CACHE_BYTES: 'memory for hot blocks served to repeated GETs (67108864 = 64 MiB; 0 disables)',
  FILE_CACHE_SIZE: `SQLite: file lookups kept for repeated GETs, 1 + blocks per file (${DEFAULT_FILE_CACHE_SIZE}; 0 disables)`,
};

/**
 * Resolves the configuration: defaults, then the JSON file (if any), then `env`.
 * Throws ConfigError listing every problem.
 */
export function loadConfig(options: { configFile?: string; env?: Env } = {}): Config {
  const env = options.env ?? process.env;
  const problems: string[] = [];
  let file: Json = {};
  if (options.configFile) {
    try {
      file = JSON.parse(readFileSync(options.configFile, 'utf8'));
    } catch (err) {
      throw new ConfigError([`cannot read config file ${options.configFile}: ${(err as Error).message}`]);
    }
  }
  // The Rust s3dedup has used both `bucket: {...}` and `buckets: [{...}]`.
  const bucket: Json = file.bucket ?? file.buckets?.[0] ?? {};
  const pick = (...vals: unknown[]) => vals.find((v) => v !== undefined && v !== null);
  const s = (name: string, ...fallbacks: unknown[]): string | undefined => {
    const v = pick(env[name], ...fallbacks);
    return v === undefined ? undefined : String(v);
  };
  // For typed values an empty variable means "not set" (the file or the default applies).
  const typed = (name: string, fileVals: unknown[]) => pick(env[name] === '' ? undefined : env[name], ...fileVals);
  const int = (name: string, def: number, min: number, max: number, ...fileVals: unknown[]): number => {
    const raw = typed(name, fileVals);
    if (raw === undefined || raw === '') return def;
    const v = Number(raw);
    if (!Number.isInteger(v) || v < min || v > max) {
      problems.push(`${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(raw)}`);
      return def;
    }
    return v;
  };
  const bool = (name: string, def: boolean, ...fileVals: unknown[]): boolean => {
    const raw = typed(name, fileVals);
    if (raw === undefined || raw === '') return def;
    if (raw === true || raw === false) return raw;
    const t = String(raw).toLowerCase();
    if (['true', '1', 'yes', 'on'].includes(t)) return true;
    if (['false', '0', 'no', 'off'].includes(t)) return false;
    problems.push(`${name} must be true or false, got ${JSON.stringify(raw)}`);
    return def;
  };
  const oneOf = <T extends string>(name: string, allowed: readonly T[], def: T, ...fileVals: unknown[]): T => {
    const raw = typed(name, fileVals);
    if (raw === undefined || raw === '') return def;
    if (!allowed.includes(String(raw) as T)) {
      problems.push(`${name} must be one of ${allowed.join(', ')}, got ${JSON.stringify(raw)}`);
      return def;
    }
    return String(raw) as T;
  };

  const pg: Json = file.postgres ?? bucket.postgres ?? {};
  const sq: Json = file.sqlite ?? bucket.sqlite ?? {};
  const s3: Json = bucket.s3 ?? bucket.minio ?? file.s3 ?? {};
  const cl: Json = bucket.cleaner ?? file.cleaner ?? {};
  const ch: Json = file.chunker ?? bucket.chunker ?? {};
  const dataDir = s('DATA_DIR', file.data_dir, bucket.data_dir) ?? './data';
  const s3Endpoint = s('S3_ENDPOINT', s3.endpoint);

  const config: Config = {
    logLevel: oneOf('LOG_LEVEL', ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const, 'info', file.logging?.level),
    logJson: bool('LOG_JSON', true, file.logging?.json),
    bucketName: s('BUCKET_NAME', bucket.name) ?? 'default',
    listenAddress: s('LISTEN_ADDRESS', bucket.address) ?? '0.0.0.0',
    listenPort: int('LISTEN_PORT', 8080, 0, 65535, bucket.port),
    kvstorageType: oneOf('KVSTORAGE_TYPE', ['sqlite', 'postgres'] as const, 'sqlite', file.kvstorage_type, bucket.kvstorage_type),
    sqlitePath: s('SQLITE_PATH', sq.path) ?? join(dataDir, 's3dedup.sqlite'),
    sqliteMaxConnections: int('SQLITE_MAX_CONNECTIONS', 1, 1, 1000, sq.pool_size),
    postgres: {
      host: s('POSTGRES_HOST', pg.host) ?? 'localhost',
      port: int('POSTGRES_PORT', 5432, 1, 65535, pg.port),
      user: s('POSTGRES_USER', pg.user) ?? 'postgres',
      password: s('POSTGRES_PASSWORD', pg.password) ?? '',
      db: s('POSTGRES_DB', pg.dbname, pg.db) ?? 's3dedup',
      maxConnections: int('POSTGRES_MAX_CONNECTIONS', 10, 1, 1000, pg.pool_size),
      schema: s('POSTGRES_SCHEMA', pg.schema),
    },
    locksType: oneOf('LOCKS_TYPE', ['memory', 'postgres'] as const, 'memory', file.locks_type, bucket.locks_type),
    blobStore: oneOf('BLOB_STORE', ['s3', 'local'] as const, s3Endpoint ? 's3' : 'local', bucket.blob_store),
    s3: {
      endpoint: s3Endpoint,
      accessKey: s('S3_ACCESS_KEY', s3.access_key),
      secretKey: s('S3_SECRET_KEY', s3.secret_key),
      region: s('S3_REGION', s3.region) ?? 'us-east-1',
      forcePathStyle: bool('S3_FORCE_PATH_STYLE', true, s3.force_path_style),
    },
    dataDir,
    localFsync: bool('LOCAL_FSYNC', false, file.local_fsync),
    localLayout: oneOf('LOCAL_LAYOUT', ['auto', 'packs', 'files'] as const, 'auto', file.local_layout),
    maxInmemorySize: int('MAX_INMEMORY_SIZE', 64 << 20, 0, Number.MAX_SAFE_INTEGER, bucket.max_inmemory_size),
    tempDir: s('TEMP_DIR', bucket.temp_dir) ?? join(dataDir, 'tmp'),
    cleaner: {
      enabled: bool('CLEANER_ENABLED', true, cl.enabled),
      intervalSeconds: int('CLEANER_INTERVAL', 3600, 1, 365 * 86400, cl.interval_seconds),
      batchSize: int('CLEANER_BATCH_SIZE', 1000, 1, 1_000_000, cl.batch_size),
      concurrency: int('CLEANER_CONCURRENCY', 8, 1, 1024, cl.concurrency),
      fullScanCron: s('CLEANER_FULL_SCAN_CRON', cl.full_scan_cron) ?? '0 3 * * *',
      graceSeconds: int('CLEANER_GRACE_SECONDS', 3600, 0, 30 * 86400, cl.grace_seconds),
      logRetentionSeconds: int('CLEANER_LOG_RETENTION', 86_400, 60, 365 * 86400, cl.log_retention_seconds),
    },
    filetrackerUrl: s('FILETRACKER_URL', bucket.filetracker_url),
    filetrackerV1Dir: s('FILETRACKER_V1_DIR', bucket.filetracker_v1_dir),
    chunker: {
      minSize: int('CHUNK_MIN_SIZE', DEFAULT_CHUNKER.minSize, 64, 64 << 20, ch.min_size),
      avgSize: int('CHUNK_AVG_SIZE', DEFAULT_CHUNKER.avgSize, 256, 64 << 20, ch.avg_size),
      maxSize: int('CHUNK_MAX_SIZE', DEFAULT_CHUNKER.maxSize, 1024, 64 << 20, ch.max_size),
    },
    uploadConcurrency: int('UPLOAD_CONCURRENCY', 8, 1, 256, file.upload_concurrency),
    readAhead: int('READ_AHEAD', 16, 1, 256, file.read_ahead),
    extentBytes: 0, // set below: its default depends on the blob store
    compressionLevel: int('COMPRESSION_LEVEL', 6, 1, 9, file.compression_level),
    lockTimeoutMs: int('LOCK_TIMEOUT_MS', 30_000, 1, 3_600_000, file.lock_timeout_ms),
    blockCacheBytes: int('BLOCK_CACHE_BYTES', 64 << 20, 0, 64 * 2 ** 30, file.block_cache_bytes),
    fileCacheSize: int('FILE_CACHE_SIZE', DEFAULT_FILE_CACHE_SIZE, 0, 2 ** 30, file.file_cache_size),
    shutdownGraceMs: int('SHUTDOWN_GRACE_MS', 30_000, 0, 3_600_000, file.shutdown_grace_ms),
    workers: int('WORKERS', 1, 1, 256, file.workers),
  };

  // Extents save requests, which S3 charges for and which bound its speed; the local stores
  // pay nothing per object worth that (the packed one appends anyway).
  config.extentBytes = int('EXTENT_BYTES', config.blobStore === 's3' ? DEFAULT_S3_EXTENT_BYTES : 0, 0, 256 << 20, file.extent_bytes);
  if (config.extentBytes > 0 && config.extentBytes < config.chunker.maxSize) {
    problems.push(`EXTENT_BYTES must be 0 or at least CHUNK_MAX_SIZE (${config.chunker.maxSize}), got ${config.extentBytes}`);
  }
  const cron = cronProblem(config.cleaner.fullScanCron);
  if (cron) problems.push(`CLEANER_FULL_SCAN_CRON is not a cron expression (${cron}): ${JSON.stringify(config.cleaner.fullScanCron)}`);
  const chunkerProblem = validateChunkerParams(config.chunker);
  if (chunkerProblem) problems.push(`chunker (CHUNK_MIN_SIZE/CHUNK_AVG_SIZE/CHUNK_MAX_SIZE): ${chunkerProblem}`);
  if (config.blobStore === 's3') {
    if (!config.s3.endpoint) problems.push('BLOB_STORE=s3 needs S3_ENDPOINT');
    else if (!/^https?:\/\/[^/]/.test(config.s3.endpoint)) problems.push(`S3_ENDPOINT must be an http(s) URL, got ${JSON.stringify(config.s3.endpoint)}`);
    if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(config.bucketName)) problems.push(`BUCKET_NAME is not a valid S3 bucket name: ${JSON.stringify(config.bucketName)}`);
  }
  if (config.locksType === 'postgres' && config.kvstorageType !== 'postgres') {
    problems.push('LOCKS_TYPE=postgres needs KVSTORAGE_TYPE=postgres (advisory locks live in the metadata database)');
  }
  if (config.workers > 1 && config.kvstorageType === 'postgres' && config.locksType === 'memory') {
    problems.push('WORKERS > 1 with KVSTORAGE_TYPE=postgres needs LOCKS_TYPE=postgres (in-memory locks cover one process)');
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}
