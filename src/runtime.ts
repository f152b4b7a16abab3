// Builds the service graph from a Config: metadata store, blob store, locks, file store.
// Shared by the server and the maintenance commands. The S3 and PostgreSQL modules are loaded
// only when the configuration uses them: the AWS SDK and pg add about 30 MB to the RSS of every
// process (each WORKERS worker) of the embedded default otherwise.
import { join } from 'node:path';
import type { BlobStore } from './blobs/blob-store.js';
import { LocalBlobStore } from './blobs/local.js';
import { resolveLocalLayout } from './blobs/local-layout.js';
import { PackedBlobStore } from './blobs/packed.js';
import { Cleaner } from './cleaner/cleaner.js';
import type { Config } from './config/config.js';
import type { LockManager } from './locks/lock-manager.js';
import { MemoryLockManager } from './locks/memory.js';
import { moduleLogger } from './log.js';
import { MetadataStore } from './meta/metadata-store.js';
import { migrateToLatest } from './meta/migrate.js';
import type { PostgresOptions } from './meta/postgres.js';
import { openSqlite } from './meta/sqlite.js';
import { ensureDescriptor } from './store/descriptor.js';
import { FileStore } from './store/file-store.js';
import { nativeDeflateMissing } from './store/native-deflate.js';

export interface Runtime {
  config: Config;
  meta: MetadataStore;
  blobs: BlobStore;
  locks: LockManager;
  store: FileStore;
  cleaner: Cleaner;
  close(): Promise<void>;
}

export async function openBlobStore(config: Config): Promise<BlobStore> {
  if (config.blobStore === 's3') {
    const { S3BlobStore } = await import('./blobs/s3.js');
    return new S3BlobStore({
      bucket: config.bucketName,
      endpoint: config.s3.endpoint,
      region: config.s3.region,
      accessKeyId: config.s3.accessKey,
      secretAccessKey: config.s3.secretKey,
      forcePathStyle: config.s3.forcePathStyle,
    });
  }
  const root = join(config.dataDir, 'blobs');
  if (resolveLocalLayout(root, config.localLayout) === 'files') return new LocalBlobStore({ root, fsync: config.localFsync });
  return PackedBlobStore.open({ root, fsync: config.localFsync });
}

export function postgresOptions(config: Config): PostgresOptions {
  const p = config.postgres;
  return { host: p.host, port: p.port, user: p.user, password: p.password, database: p.db, maxConnections: p.maxConnections, schema: p.schema };
}

async function openLocks(config: Config): Promise<LockManager> {
  if (config.locksType === 'postgres') {
    const [{ PostgresLockManager }, { createPgPool }] = await Promise.all([import('./locks/postgres.js'), import('./meta/postgres.js')]);
    return new PostgresLockManager(createPgPool(postgresOptions(config)), config.lockTimeoutMs);
  }
  return new MemoryLockManager(config.lockTimeoutMs);
}

export async function openRuntime(config: Config): Promise<Runtime> {
  const log = moduleLogger('runtime');
  const db =
    config.kvstorageType === 'postgres'
      ? await (await import('./meta/postgres.js')).openPostgres(postgresOptions(config))
      : openSqlite(config.sqlitePath);
  let blobs: BlobStore;
  try {
    blobs = await openBlobStore(config);
  } catch (err) {
    await db.destroy();
    throw err;
  }
  try {
    await migrateToLatest(db);
    await ensureDescriptor(blobs, config.chunker);
  } catch (err) {
    await db.destroy();
    await blobs.close();
    throw err;
  }
  const meta = new MetadataStore(db, { fileCacheSize: config.fileCacheSize });
  const locks = await openLocks(config);
  if (config.kvstorageType === 'postgres' && config.locksType === 'memory') {
    log.warn('LOCKS_TYPE=memory with PostgreSQL metadata: safe for one instance only; use LOCKS_TYPE=postgres for several');
  }
  if (nativeDeflateMissing) {
    log.warn({ reason: nativeDeflateMissing }, 'libdeflate addon not loaded: zlib deflates blocks (about 1.7x slower) and inflates small bodies');
  }
  const store = new FileStore(meta, blobs, locks, config, moduleLogger('store'));
  const cleaner = new Cleaner(
    meta,
    blobs,
    {
      graceSeconds: config.cleaner.graceSeconds,
      batchSize: config.cleaner.batchSize,
      concurrency: config.cleaner.concurrency,
      logRetentionSeconds: config.cleaner.logRetentionSeconds,
    },
    moduleLogger('cleaner'),
  );
  return {
    config,
    meta,
    cleaner,
    blobs,
    locks,
    store,
    async close() {
      await locks.close();
      await meta.close();
      await blobs.close();
    },
  };
}
