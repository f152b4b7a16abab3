// A PostgreSQL for the postgres rows of the matrix: $DATABASE_URL when set, else a throw-away
// cluster made with Debian's initdb in a temp dir, listening on a free loopback port (run as the
// `postgres` user, since PostgreSQL refuses to run as root).
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureDebPackages, freePort, run, tryRun, waitFor } from './sys.js';

export interface Postgres {
  host: string;
  port: number;
  user: string;
  password: string;
  /** a fresh database name per server start */
  newDatabase(): Promise<string>;
  stop(): Promise<void>;
}

function pgBinDir(): string | null {
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return null;
  const versions = readdirSync(base).filter((v) => existsSync(join(base, v, 'bin', 'initdb'))).sort((a, b) => Number(b) - Number(a));
  return versions.length ? join(base, versions[0], 'bin') : null;
}

export async function startPostgres(log: (s: string) => void): Promise<Postgres> {
  const fromEnv = process.env.DATABASE_URL;
  if (fromEnv) {
    const u = new URL(fromEnv);
    const info = { host: u.hostname, port: Number(u.port || 5432), user: decodeURIComponent(u.username || 'postgres'), password: decodeURIComponent(u.password) };
    const psql = (sql: string) =>
      run('psql', ['-h', info.host, '-p', String(info.port), '-U', info.user, '-d', 'postgres', '-c', sql], {
        env: { ...process.env, PGPASSWORD: info.password },
      });
    return {
      ...info,
      newDatabase: () => createDatabase(psql),
      stop: async () => {},
    };
  }
  let bin = pgBinDir();
  if (!bin) {
    await ensureDebPackages(['postgresql'], log);
    bin = pgBinDir();
    if (!bin) throw new Error('initdb not found under /usr/lib/postgresql after installing postgresql');
  }
  if ((await tryRun('id', ['-u', 'postgres'])) === null) throw new Error('no `postgres` system user to run PostgreSQL as');
  // Its own temp dir under /tmp (world-traversable), owned by postgres.
  const dir = mkdtempSync(join(tmpdir(), 's3dedup-bench-pg-'));
  const data = join(dir, 'data');
  const uid = Number((await run('id', ['-u', 'postgres'])).trim());
  const gid = Number((await run('id', ['-g', 'postgres'])).trim());
  chownSync(dir, uid, gid);
  const asPg = (cmd: string, args: string[]) => run('runuser', ['-u', 'postgres', '--', join(bin!, cmd), ...args], { timeoutMs: 120_000 });
  await asPg('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync']);
  const port = await freePort();
  // fsync off: the bench measures the proxy, not the disk; the sqlite rows use synchronous=NORMAL.
  await asPg('pg_ctl', [
    '-D', data, '-l', join(dir, 'pg.log'), '-w', 'start',
    '-o', `-h 127.0.0.1 -p ${port} -k ${dir} -c fsync=off -c synchronous_commit=off -c max_connections=200`,
  ]);
  const info = { host: '127.0.0.1', port, user: 'postgres', password: '' };
  const psql = (sql: string) => run('psql', ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-c', sql]);
  await waitFor('PostgreSQL', async () => (await psql('select 1')).includes('1'), 30_000);
  return {
    ...info,
    newDatabase: () => createDatabase(psql),
    async stop() {
      await asPg('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Server environment for a PostgreSQL metadata store. */
export function pgServerEnv(pg: Postgres, database: string): Record<string, string> {
  return {
    KVSTORAGE_TYPE: 'postgres',
    POSTGRES_HOST: pg.host,
    POSTGRES_PORT: String(pg.port),
    POSTGRES_USER: pg.user,
    POSTGRES_PASSWORD: pg.password,
    POSTGRES_DB: database,
  };
}

let dbCounter = 0;

/** A fresh, uniquely named database, made through `psql`; returns its name. */
async function createDatabase(psql: (sql: string) => Promise<string>): Promise<string> {
  const name = `bench_${Date.now().toString(36)}_${dbCounter++}`;
  await psql(`create database ${name}`);
  return name;
}
