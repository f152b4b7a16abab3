// The original Python Filetracker server as a reference peer. Its source is never copied into
// this repository: it is taken at run time from $FILETRACKER_SRC (a checkout holding the
// `filetracker/` package) or exported with `git archive` from a local mirror of
// sio2project/filetracker into a temp dir, and run with Debian's python3, python3-bsddb3,
// python3-gevent and gunicorn through its own entry point (filetracker.servers.run), which
// starts gunicorn with gevent workers (2 x CPUs by default) as its README describes.
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { ensureDebPackages, freePort, run, spawnServer, stopChild, tryRun } from './sys.js';

const DEFAULT_MIRROR = '/work/.mirror/sio2project+filetracker/repo';
const PY = '/usr/bin/python3';

export interface FiletrackerSource {
  dir: string;
  /** where it came from, for the report */
  origin: string;
}

/** Finds the Filetracker source, or returns why it is unavailable. */
export async function filetrackerSource(tmp: string, log: (s: string) => void): Promise<FiletrackerSource | string> {
  const fromEnv = process.env.FILETRACKER_SRC;
  if (fromEnv) {
    if (!existsSync(join(fromEnv, 'filetracker', 'servers', 'run.py'))) {
      return `FILETRACKER_SRC=${fromEnv} has no filetracker/servers/run.py`;
    }
    return { dir: fromEnv, origin: `FILETRACKER_SRC=${fromEnv}` };
  }
  const mirror = process.env.FILETRACKER_MIRROR ?? DEFAULT_MIRROR;
  if (!existsSync(mirror)) {
    return `no FILETRACKER_SRC and no mirror at ${mirror} (fetch github:sio2project/filetracker, or set FILETRACKER_SRC to a checkout)`;
  }
  const dir = join(tmp, 'filetracker-src');
  mkdirSync(dir, { recursive: true });
  const commit = (await run('git', ['--git-dir', mirror, 'rev-parse', 'HEAD'])).trim();
  log(`exporting Filetracker ${commit.slice(0, 9)} from ${mirror} into ${dir}`);
  await run('sh', ['-c', `git --git-dir "${mirror}" archive HEAD | tar -x -C "${dir}"`]);
  return { dir, origin: `sio2project/filetracker@${commit.slice(0, 9)} (git archive of ${mirror})` };
}

/** Installs (if root) and checks the Debian packages the Python server needs. */
export async function ensureFiletrackerDeps(log: (s: string) => void): Promise<void> {
  await ensureDebPackages(['python3-bsddb3', 'python3-gevent', 'gunicorn', 'python3-six'], log);
  const ok = await tryRun(PY, ['-c', 'import bsddb3, gevent, gunicorn, six']);
  if (ok === null) throw new Error(`${PY} cannot import bsddb3, gevent, gunicorn and six after installing them`);
}

export interface FiletrackerServer {
  url: string;
  pid: number;
  child: ChildProcess;
  stop(): Promise<void>;
}

export async function startFiletracker(src: FiletrackerSource, dataDir: string, logDir: string): Promise<FiletrackerServer> {
  const port = await freePort();
  mkdirSync(dataDir, { recursive: true });
  // Its upload temp files (tempfile.mkstemp) beside its data, on the same disk as s3dedup's.
  const tmpDir = join(dataDir, 'tmp');
  mkdirSync(tmpDir, { recursive: true });
  const url = `http://127.0.0.1:${port}`;
  // Debian's gunicorn and python3, not whatever python a version manager put first on the PATH.
  const child = await spawnServer(
    'Filetracker server',
    PY,
    ['-m', 'filetracker.servers.run', '-l', '127.0.0.1', '-p', String(port), '-d', dataDir, '-D', '--log-level', 'WARNING'],
    {
      cwd: src.dir,
      env: { PATH: '/usr/bin:/bin:/usr/sbin:/sbin', PYTHONPATH: src.dir, HOME: dataDir, TMPDIR: tmpDir, LANG: 'C.UTF-8' },
      logPath: join(logDir, `filetracker-${port}.log`),
      ready: async () => (await fetch(`${url}/version`, { signal: AbortSignal.timeout(2000) })).ok,
      timeoutMs: 60_000,
    },
  );
  return { url, pid: child.pid!, child, stop: () => stopChild(child, 15_000) };
}
