// loadConfig: defaults, the s3dedup JSON file (both `bucket` and `buckets` shapes), the
// environment overriding the file, and every wrong value reported at once.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, ENV_VARS, loadConfig, type Config } from '../../src/config/config.js';
import { DEFAULT_CHUNKER } from '../../src/store/chunker.js';

const dir = mkdtempSync(join(tmpdir(), 's3dedup-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
function configFile(content: unknown): string {
  const path = join(dir, `config-${n++}.json`);
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content, null, 2));
  return path;
}

/** The ConfigError loadConfig throws; fails the test when it does not. */
function configError(options: Parameters<typeof loadConfig>[0]): ConfigError {
  let config: Config;
  try {
    config = loadConfig(options);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error(`expected a ConfigError, got a config: ${JSON.stringify(config)}`);
}

/** s3dedup's own config.json (Rust), with `buckets: [...]` and a `minio` section. */
const S3DEDUP_FILE = {
  logging: { level: 'debug', json: false },
  buckets: [
    {
      name: 'bucket1',
      address: '127.0.0.2',
      port: 3000,
      kvstorage_type: 'sqlite',
      sqlite: { path: 'db/kv.db', pool_size: 10 },
      locks_type: 'memory',
      s3storage_type: 'minio',
      minio: { endpoint: 'http://localhost:9000', access_key: 'minioadmin', secret_key: 'miniosecret', force_path_style: true },
      cleaner: { enabled: false, interval_seconds: 60, batch_size: 50 },
      filetracker_url: 'http://old-ft:9999',
    },
  ],
};

describe('loadConfig defaults', () => {
  it('runs on the embedded default with an empty environment', () => {
    const c = loadConfig({ env: {} });
    expect(c.listenAddress).toBe('0.0.0.0');
    expect(c.listenPort).toBe(8080);
    expect(c.kvstorageType).toBe('sqlite');
    expect(c.locksType).toBe('memory');
    expect(c.blobStore).toBe('local');
    expect(c.dataDir).toBe('./data');
    expect(c.sqlitePath).toBe(join('./data', 's3dedup.sqlite'));
    expect(c.bucketName).toBe('default');
    expect(c.s3.region).toBe('us-east-1');
    expect(c.s3.forcePathStyle).toBe(true);
    expect(c.chunker).toEqual(DEFAULT_CHUNKER);
    expect(c.uploadConcurrency).toBe(8);
    expect(c.readAhead).toBe(16);
    expect(c.compressionLevel).toBe(6);
    expect(c.lockTimeoutMs).toBe(30_000);
    expect(c.shutdownGraceMs).toBe(30_000);
    expect(c.logLevel).toBe('info');
    expect(c.logJson).toBe(true);
  });

  it('derives the SQLite path from DATA_DIR and picks S3 when an endpoint is set', () => {
    const c = loadConfig({ env: { DATA_DIR: '/srv/ft', S3_ENDPOINT: 'http://s3.local:9000', BUCKET_NAME: 'files' } });
    expect(c.sqlitePath).toBe('/srv/ft/s3dedup.sqlite');
    expect(c.blobStore).toBe('s3');
    expect(c.s3.endpoint).toBe('http://s3.local:9000');
    expect(loadConfig({ env: { S3_ENDPOINT: 'http://s3.local:9000', BLOB_STORE: 'local' } }).blobStore).toBe('local');
  });

  it('does not read process.env when an env object is given', () => {
    const saved = process.env.LISTEN_PORT;
    process.env.LISTEN_PORT = '1234';
    try {
      expect(loadConfig({ env: {} }).listenPort).toBe(8080);
    } finally {
      if (saved === undefined) delete process.env.LISTEN_PORT;
      else process.env.LISTEN_PORT = saved;
    }
  });

  it('parses booleans in the usual spellings and treats an empty variable as unset', () => {
    for (const t of ['true', 'TRUE', '1', 'yes', 'on']) expect(loadConfig({ env: { LOCAL_FSYNC: t } }).localFsync, t).toBe(true);
    for (const f of ['false', '0', 'no', 'off', 'Off']) expect(loadConfig({ env: { S3_FORCE_PATH_STYLE: f } }).s3.forcePathStyle, f).toBe(false);
    expect(loadConfig({ env: { LISTEN_PORT: '', LOCAL_FSYNC: '' } })).toMatchObject({ listenPort: 8080, localFsync: false });
  });

  it('documents every variable it reads in ENV_VARS', () => {
    for (const name of ['LISTEN_PORT', 'DATA_DIR', 'BLOB_STORE', 'CHUNK_AVG_SIZE', 'UPLOAD_CONCURRENCY', 'SHUTDOWN_GRACE_MS', 'LOCAL_FSYNC']) {
      expect(ENV_VARS, name).toHaveProperty(name);
    }
  });
});

describe('loadConfig with an s3dedup JSON file', () => {
  it('reads the `buckets: [...]` format of s3dedup', () => {
    const c = loadConfig({ configFile: configFile(S3DEDUP_FILE), env: {} });
    expect(c.logLevel).toBe('debug');
    expect(c.logJson).toBe(false);
    expect(c.bucketName).toBe('bucket1');
    expect(c.listenAddress).toBe('127.0.0.2');
    expect(c.listenPort).toBe(3000);
    expect(c.sqlitePath).toBe('db/kv.db');
    expect(c.sqliteMaxConnections).toBe(10);
    expect(c.blobStore).toBe('s3');
    expect(c.s3).toMatchObject({ endpoint: 'http://localhost:9000', accessKey: 'minioadmin', secretKey: 'miniosecret', forcePathStyle: true });
    expect(c.cleaner).toMatchObject({ enabled: false, intervalSeconds: 60, batchSize: 50 });
    expect(c.filetrackerUrl).toBe('http://old-ft:9999');
  });

  it('reads the older `bucket: {...}` format with an `s3` section', () => {
    const c = loadConfig({
      configFile: configFile({
        bucket: {
          name: 'single',
          port: 4000,
          kvstorage_type: 'sqlite',
          s3: { endpoint: 'https://s3.example.com', region: 'eu-central-1', access_key: 'k', secret_key: 's', force_path_style: false },
        },
        sqlite: { path: '/var/lib/s3dedup/meta.db' },
        chunker: { min_size: 16_384, avg_size: 65_536, max_size: 262_144 },
        upload_concurrency: 3,
      }),
      env: {},
    });
    expect(c.bucketName).toBe('single');
    expect(c.listenPort).toBe(4000);
    expect(c.sqlitePath).toBe('/var/lib/s3dedup/meta.db');
    expect(c.s3).toMatchObject({ endpoint: 'https://s3.example.com', region: 'eu-central-1', forcePathStyle: false });
    expect(c.chunker).toEqual({ minSize: 16_384, avgSize: 65_536, maxSize: 262_144 });
    expect(c.uploadConcurrency).toBe(3);
  });

  it('lets the environment override the file', () => {
    const c = loadConfig({
      configFile: configFile(S3DEDUP_FILE),
      env: {
        BUCKET_NAME: 'from-env',
        LISTEN_ADDRESS: '10.0.0.1',
        LISTEN_PORT: '9090',
        SQLITE_PATH: '/env/meta.sqlite',
        S3_ENDPOINT: 'http://env-s3:9000',
        S3_ACCESS_KEY: 'env-key',
        S3_FORCE_PATH_STYLE: 'false',
        LOG_LEVEL: 'warn',
        LOG_JSON: 'true',
        CLEANER_ENABLED: 'true',
      },
    });
    expect(c.bucketName).toBe('from-env');
    expect(c.listenAddress).toBe('10.0.0.1');
    expect(c.listenPort).toBe(9090);
    expect(c.sqlitePath).toBe('/env/meta.sqlite');
    expect(c.s3).toMatchObject({ endpoint: 'http://env-s3:9000', accessKey: 'env-key', secretKey: 'miniosecret', forcePathStyle: false });
    expect(c.logLevel).toBe('warn');
    expect(c.logJson).toBe(true);
    expect(c.cleaner.enabled).toBe(true);
    // Untouched by the environment: still from the file.
    expect(c.sqliteMaxConnections).toBe(10);
    expect(c.cleaner.intervalSeconds).toBe(60);
  });

  // An empty variable counts as unset (see the previous describe): then the file's value must
  // stand, not the built-in default. docker-compose's `LISTEN_PORT=` and `env_file` lines with no
  // value produce exactly this.
  it('keeps the file value when the variable is set but empty', () => {
    const c = loadConfig({ configFile: configFile(S3DEDUP_FILE), env: { LISTEN_PORT: '', LOG_JSON: '' } });
    expect(c.listenPort).toBe(3000);
    expect(c.logJson).toBe(false);
  });

  it('reports an unreadable or malformed file as a ConfigError naming it', () => {
    const missing = join(dir, 'does-not-exist.json');
    expect(configError({ configFile: missing, env: {} }).message).toContain(missing);
    const broken = configFile('{ "buckets": [ ');
    expect(configError({ configFile: broken, env: {} }).message).toContain(broken);
  });

  it('validates values that come from the file too', () => {
    const err = configError({ configFile: configFile({ buckets: [{ port: 70_000, kvstorage_type: 'redis' }] }), env: {} });
    expect(err.problems).toHaveLength(2);
    expect(err.message).toMatch(/LISTEN_PORT .*70000/);
    expect(err.message).toMatch(/KVSTORAGE_TYPE .*redis/);
  });
});

describe('loadConfig validation', () => {
  it('reports every invalid value together in one ConfigError', () => {
    const err = configError({
      env: {
        LISTEN_PORT: 'abc',
        KVSTORAGE_TYPE: 'mysql',
        LOG_LEVEL: 'loud',
        S3_FORCE_PATH_STYLE: 'maybe',
        UPLOAD_CONCURRENCY: '0',
        COMPRESSION_LEVEL: '10',
        CHUNK_AVG_SIZE: '1000',
      },
    });
    expect(err.problems).toHaveLength(7);
    const text = err.message;
    expect(text).toMatch(/LISTEN_PORT must be a whole number from 0 to 65535, got "abc"/);
    expect(text).toMatch(/KVSTORAGE_TYPE must be one of sqlite, postgres, got "mysql"/);
    expect(text).toMatch(/LOG_LEVEL must be one of .*"loud"/);
    expect(text).toMatch(/S3_FORCE_PATH_STYLE must be true or false, got "maybe"/);
    expect(text).toMatch(/UPLOAD_CONCURRENCY .*"0"/);
    expect(text).toMatch(/COMPRESSION_LEVEL .*"10"/);
    expect(text).toMatch(/CHUNK_AVG_SIZE.*power of two.*1000/);
    // One line per problem.
    expect(text.split('\n').filter((l) => l.startsWith('  - '))).toHaveLength(7);
  });

  it('rejects fractional, negative and out-of-range numbers', () => {
    for (const [name, value] of [
      ['LISTEN_PORT', '80.5'],
      ['LISTEN_PORT', '-1'],
      ['LISTEN_PORT', '65536'],
      ['READ_AHEAD', '1e9'],
      ['LOCK_TIMEOUT_MS', '0'],
    ]) {
      const err = configError({ env: { [name]: value } });
      expect(err.problems, `${name}=${value}`).toHaveLength(1);
      expect(err.problems[0]).toContain(name);
    }
  });

  // `64 << 30` is 0 in JavaScript (32-bit shift), which made every non-zero value out of range.
  it('accepts a BLOCK_CACHE_BYTES above zero', () => {
    expect(loadConfig({ env: { BLOCK_CACHE_BYTES: '0' } }).blockCacheBytes).toBe(0);
    expect(loadConfig({ env: { BLOCK_CACHE_BYTES: String(128 << 20) } }).blockCacheBytes).toBe(128 << 20);
    expect(loadConfig({ env: { BLOCK_CACHE_BYTES: String(8 * 2 ** 30) } }).blockCacheBytes).toBe(8 * 2 ** 30);
  });

  it('checks the chunker sizes against each other', () => {
    const err = configError({ env: { CHUNK_MIN_SIZE: '262144', CHUNK_AVG_SIZE: '131072', CHUNK_MAX_SIZE: '524288' } });
    expect(err.problems).toHaveLength(1);
    expect(err.problems[0]).toMatch(/^chunker \(CHUNK_MIN_SIZE\/CHUNK_AVG_SIZE\/CHUNK_MAX_SIZE\): sizes must satisfy minSize < avgSize < maxSize/);
  });

  it('refuses postgres locks on sqlite metadata', () => {
    const err = configError({ env: { LOCKS_TYPE: 'postgres' } });
    expect(err.problems).toEqual([expect.stringMatching(/LOCKS_TYPE=postgres needs KVSTORAGE_TYPE=postgres/)]);
    expect(() => loadConfig({ env: { LOCKS_TYPE: 'postgres', KVSTORAGE_TYPE: 'postgres' } })).not.toThrow();
  });

  it('takes WORKERS, and refuses several with PostgreSQL metadata but in-memory locks', () => {
    expect(loadConfig({ env: {} }).workers).toBe(1);
    expect(loadConfig({ env: { WORKERS: '4' } }).workers).toBe(4);
    expect(configError({ env: { WORKERS: '0' } }).problems).toEqual([expect.stringMatching(/^WORKERS/)]);
    const err = configError({ env: { WORKERS: '2', KVSTORAGE_TYPE: 'postgres' } });
    expect(err.problems).toEqual([expect.stringMatching(/WORKERS > 1 with KVSTORAGE_TYPE=postgres needs LOCKS_TYPE=postgres/)]);
    expect(loadConfig({ env: { WORKERS: '2', KVSTORAGE_TYPE: 'postgres', LOCKS_TYPE: 'postgres' } }).workers).toBe(2);
  });

  it('checks the S3 settings only when blocks go to S3', () => {
    expect(configError({ env: { BLOB_STORE: 's3' } }).problems).toEqual(['BLOB_STORE=s3 needs S3_ENDPOINT']);
    const err = configError({ env: { S3_ENDPOINT: 'ftp://x', BUCKET_NAME: 'Bad_Bucket' } });
    expect(err.problems).toHaveLength(2);
    expect(err.message).toMatch(/S3_ENDPOINT must be an http\(s\) URL/);
    expect(err.message).toMatch(/BUCKET_NAME is not a valid S3 bucket name/);
    // Without S3 the bucket name is not used and not checked.
    expect(loadConfig({ env: { BUCKET_NAME: 'Bad_Bucket' } }).bucketName).toBe('Bad_Bucket');
  });
});
