// A PostgreSQL server for tests: $DATABASE_URL if set, else 127.0.0.1:5432 (user postgres,
// database test) when it answers, else a postgres container when Docker answers. Each
// harness then works in a schema of its own, dropped afterwards.
import pg from 'pg';
import { probeDocker } from './s3.js';

export interface PgInfo {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
}

export interface PgServer extends PgInfo {
  stop(): Promise<void>;
}

const LOCAL = 'postgres://postgres@127.0.0.1:5432/test';

export function parsePgUrl(url: string): PgInfo {
  const u = new URL(url);
  return {
    host: decodeURIComponent(u.hostname),
    port: Number(u.port || 5432),
    user: decodeURIComponent(u.username || 'postgres'),
    password: decodeURIComponent(u.password),
    database: decodeURIComponent(u.pathname.slice(1) || 'postgres'),
  };
}

async function answers(info: PgInfo): Promise<true | string> {
  const client = new pg.Client({ ...info, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.query('select 1');
    return true;
  } catch (err) {
    return (err as Error).message;
  } finally {
    await client.end().catch(() => {});
  }
}

export async function startPostgres(): Promise<PgServer> {
  const failures: string[] = [];
  const fromEnv = process.env.DATABASE_URL;
  if (fromEnv) {
    const info = parsePgUrl(fromEnv);
    const ok = await answers(info);
    if (ok === true) return { ...info, stop: async () => {} };
    throw new Error(`DATABASE_URL=${fromEnv} does not answer: ${ok}`);
  }
  const local = parsePgUrl(LOCAL);
  const ok = await answers(local);
  if (ok === true) return { ...local, stop: async () => {} };
  failures.push(`${LOCAL}: ${ok}`);
  const docker = await probeDocker();
  if (docker === true) {
    const { GenericContainer, Wait } = await import('testcontainers');
    const container = await new GenericContainer('postgres:16-alpine')
      .withEnvironment({ POSTGRES_PASSWORD: 'test', POSTGRES_DB: 'test' })
      .withExposedPorts(5432)
      .withWaitStrategy(Wait.forLogMessage(/database system is ready to accept connections/, 2))
      .start();
    return {
      host: container.getHost(),
      port: container.getMappedPort(5432),
      user: 'postgres',
      password: 'test',
      database: 'test',
      stop: async () => {
        await container.stop();
      },
    };
  }
  failures.push(`no Docker engine: ${docker}`);
  throw new Error(`no PostgreSQL for the tests; tried: ${failures.join('; ')}. Set DATABASE_URL, or run PostgreSQL on 127.0.0.1:5432, or a Docker engine`);
}

/** POSTGRES_* environment for a server working in `schema`. */
export function pgEnv(info: PgInfo, schema: string): Record<string, string> {
  return {
    KVSTORAGE_TYPE: 'postgres',
    LOCKS_TYPE: 'postgres',
    POSTGRES_HOST: info.host,
    POSTGRES_PORT: String(info.port),
    POSTGRES_USER: info.user,
    POSTGRES_PASSWORD: info.password,
    POSTGRES_DB: info.database,
    POSTGRES_SCHEMA: schema,
  };
}

export async function dropSchema(info: PgInfo, schema: string): Promise<void> {
  const client = new pg.Client(info);
  await client.connect();
  try {
    await client.query(`drop schema if exists "${schema}" cascade`);
  } finally {
    await client.end();
  }
}
