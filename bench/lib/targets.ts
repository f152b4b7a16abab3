// A target is one server under load with one configuration: s3dedup with a metadata store and a
// blob store, the original Filetracker, or the S3 endpoint itself. The matrix in run.ts is a list
// of these; a configuration the build refuses becomes a "not available" row.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { startFiletracker, type FiletrackerSource } from './filetracker.js';
import { S3_DUMMY_AUTH, type Moto } from './moto.js';
import { pgServerEnv, type Postgres } from './postgres.js';
import { startRelay } from './relay.js';
import { startS3dedup, StartupRefused } from './s3dedup.js';
import { freePort } from './sys.js';

export type MetaKind = 'sqlite' | 'postgres';
export type BlobKind = 'local' | 's3';

export interface TargetSpec {
  /** row label */
  name: string;
  /** 'relay': a bare Node HTTP relay in front of the S3 endpoint (relay.ts) */
  kind: 's3dedup' | 'filetracker' | 's3' | 'relay';
  meta?: MetaKind;
  blobs?: BlobKind;
  /** extra server environment for this row (tuning experiments) */
  env?: Record<string, string>;
  /** only the large-file part (tuning rows) */
  largeOnly?: boolean;
}

export interface Target extends TargetSpec {
  url: string;
  /** URL path of a stored file key (no query string) */
  path(key: string): string;
  /** query string a PUT carries (the version, for the Filetracker protocol) */
  putQuery: string;
  /** 'ft': Filetracker headers (gzip body, SHA256-Checksum, Logical-Size); 's3': a raw object */
  mode: 'ft' | 's3';
  /** headers every request needs (S3: the dummy Authorization moto accepts) */
  authHeaders: Record<string, string>;
  pid: number;
  /** 'hwm': one process, peak from VmHWM; 'tree': summed RSS of the process tree, sampled */
  memory: 'hwm' | 'tree';
  stop(): Promise<void>;
}

/** RFC 2822 date the Filetracker protocol carries as a version. */
export function versionQuery(seconds: number): string {
  return `?last_modified=${encodeURIComponent(new Date(seconds * 1000).toUTCString())}`;
}

export interface TargetDeps {
  tmp: string;
  moto?: Moto;
  /** started lazily, only when a postgres row's server accepts the configuration */
  postgres?: () => Promise<Postgres>;
  filetracker?: FiletrackerSource;
  /** extra environment for s3dedup servers (e.g. chunker parameters) */
  env?: Record<string, string>;
  cpuProfDir?: string;
  /** run this compiled CLI (bench/.cache/dist) instead of src/ through tsx */
  compiledMain?: string;
}

let instance = 0;

export async function startTarget(spec: TargetSpec, deps: TargetDeps): Promise<Target> {
  const dir = join(deps.tmp, `${spec.kind}-${spec.meta ?? ''}-${spec.blobs ?? ''}-${instance++}`);
  mkdirSync(dir, { recursive: true });
  const version = versionQuery(Math.floor(Date.now() / 1000));
  switch (spec.kind) {
    case 's3dedup': {
      const env: Record<string, string> = { DATA_DIR: dir, ...(deps.env ?? {}), ...(spec.env ?? {}) };
      if (spec.blobs === 's3') {
        if (!deps.moto) throw new Error('no S3 endpoint for an s3 row');
        const bucket = `bench-${instance}-${Date.now().toString(36)}`;
        await deps.moto.createBucket(bucket);
        Object.assign(env, {
          BLOB_STORE: 's3',
          S3_ENDPOINT: deps.moto.endpoint,
          S3_ACCESS_KEY: 'bench',
          S3_SECRET_KEY: 'bench',
          BUCKET_NAME: bucket,
        });
      } else {
        env.BLOB_STORE = 'local';
      }
      if (spec.meta === 'postgres') {
        if (!deps.postgres) throw new Error('no PostgreSQL for a postgres row');
        const pg = await deps.postgres();
        Object.assign(env, pgServerEnv(pg, await pg.newDatabase()));
      }
      const server = await startS3dedup(env, { cpuProfDir: deps.cpuProfDir, compiledMain: deps.compiledMain });
      return {
        ...spec,
        url: server.url,
        path: (key) => `/ft/files/${key}`,
        putQuery: version,
        mode: 'ft',
        authHeaders: {},
        pid: server.pid,
        // Several worker processes: their summed RSS, like the other multi-process servers.
        memory: Number(env.WORKERS ?? 1) > 1 ? 'tree' : 'hwm',
        stop: server.stop,
      };
    }
    case 'filetracker': {
      if (!deps.filetracker) throw new Error('no Filetracker source');
      const server = await startFiletracker(deps.filetracker, join(dir, 'data'), dir);
      return {
        ...spec,
        url: server.url,
        path: (key) => `/files/${key}`,
        putQuery: version,
        mode: 'ft',
        authHeaders: {},
        pid: server.pid,
        memory: 'tree',
        stop: server.stop,
      };
    }
    case 's3':
    case 'relay': {
      if (!deps.moto) throw new Error('no S3 endpoint');
      const bucket = `${spec.kind === 's3' ? 'direct' : 'relay'}-${instance}-${Date.now().toString(36)}`;
      await deps.moto.createBucket(bucket);
      const moto = deps.moto;
      const relay = spec.kind === 'relay' ? await startRelay(moto.endpoint, dir) : undefined;
      return {
        ...spec,
        url: relay?.url ?? moto.endpoint,
        path: (key) => `/${bucket}/${key}`,
        putQuery: '',
        mode: 's3',
        authHeaders: S3_DUMMY_AUTH,
        // The relay's own memory; moto's is the direct row's.
        pid: relay?.pid ?? moto.pid,
        memory: relay ? 'hwm' : 'tree',
        stop: async () => relay?.stop(), // moto is shared; run.ts stops it
      };
    }
  }
}

/**
 * Does this build support PostgreSQL metadata? Starts the server against a port where nothing
 * listens: a build without it refuses the configuration outright ("not implemented"), a build
 * with it fails to connect (or, with lazy connections, starts). true, or the refusal.
 */
export async function postgresSupported(tmp: string): Promise<true | string> {
  const dir = join(tmp, 'pg-probe');
  mkdirSync(dir, { recursive: true });
  const env = { DATA_DIR: dir, BLOB_STORE: 'local', KVSTORAGE_TYPE: 'postgres', POSTGRES_HOST: '127.0.0.1', POSTGRES_PORT: String(await freePort()), POSTGRES_DB: 'probe', POSTGRES_USER: 'probe' };
  try {
    const server = await startS3dedup(env);
    await server.stop();
    return true;
  } catch (err) {
    const text = err instanceof StartupRefused ? err.output : String(err);
    const refusal = /not (yet )?(implemented|supported|available)[^\n]*/i.exec(text);
    return refusal ? refusal[0].trim() : true;
  }
}
