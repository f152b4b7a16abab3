// Starts `s3dedup server` as a user would (node --no-concurrent-marking, the tsc build or tsx) on a free
// loopback port, optionally under `node --cpu-prof`, and stops it with SIGTERM so a profile is
// written on exit.
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { SERVER_NODE_FLAGS } from '../../src/node-flags.js';
import { CACHE_DIR, freePort, ROOT, spawnTracked, stopChild, tryRun, waitFor } from './sys.js';
import type { ChildProcess } from 'node:child_process';

export interface S3dedupServer {
  url: string;
  port: number;
  pid: number;
  child: ChildProcess;
  output(): string;
  stop(): Promise<void>;
}

/** Thrown when the server exits during start-up, e.g. for a configuration it does not support. */
export class StartupRefused extends Error {
  constructor(readonly output: string, code: number | null) {
    super(`s3dedup server exited during start-up (code ${code}): ${lastLines(output, 3)}`);
  }
}

/**
 * Compiles src/ with tsc into bench/.cache/dist (git-ignored, next to node_modules so imports
 * resolve) and returns the path of the compiled CLI. Profiles of the compiled build carry real
 * line numbers and no loader frames, which tsx's on-the-fly transform does not give.
 */
export async function compiledCli(log: (s: string) => void): Promise<string> {
  const outDir = join(CACHE_DIR, 'dist');
  rmSync(outDir, { recursive: true, force: true });
  log(`compiling src/ with tsc into ${outDir} (for readable profiles)`);
  // tsc emits even when another engineer's work in progress has type errors; only a missing
  // output is fatal.
  await tryRun('npx', ['tsc', '-p', 'tsconfig.build.json', '--outDir', outDir, '--sourceMap', 'false'], { cwd: ROOT, timeoutMs: 300_000 });
  const main = join(outDir, 'src', 'cli', 'main.js');
  if (!existsSync(main)) throw new Error(`tsc wrote no ${main}`);
  return main;
}

export async function startS3dedup(env: Record<string, string>, opts: { cpuProfDir?: string; compiledMain?: string } = {}): Promise<S3dedupServer> {
  const port = await freePort();
  const nodeArgs: string[] = [...SERVER_NODE_FLAGS]; // as npm start runs it
  if (opts.cpuProfDir) {
    mkdirSync(opts.cpuProfDir, { recursive: true });
    nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${opts.cpuProfDir}`);
  }
  let out = '';
  const entry = opts.compiledMain ? [opts.compiledMain] : ['--import', 'tsx', 'src/cli/main.ts'];
  const child = spawnTracked(process.execPath, [...nodeArgs, ...entry, 'server'], {
    cwd: ROOT,
    env: {
      ...process.env,
      LOG_LEVEL: 'warn',
      ...env,
      LISTEN_ADDRESS: '127.0.0.1',
      LISTEN_PORT: String(port),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const keep = (d: Buffer) => {
    out = (out + d.toString()).slice(-20_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor(
      's3dedup server',
      async () => (await fetch(`${url}/ft/version`, { signal: AbortSignal.timeout(2000) })).ok,
      60_000,
      () => (child.exitCode !== null ? 'exited' : null),
    );
  } catch (err) {
    if (child.exitCode !== null) throw new StartupRefused(out, child.exitCode);
    await stopChild(child, 2000, 'SIGKILL');
    throw new Error(`${(err as Error).message}\n${lastLines(out, 10)}`);
  }
  return {
    url,
    port,
    pid: child.pid!,
    child,
    output: () => out,
    // A generous grace: --cpu-prof writes its profile on exit, and the store closes cleanly.
    stop: () => stopChild(child, 30_000),
  };
}

function lastLines(s: string, n: number): string {
  return s.trim().split('\n').slice(-n).join(' | ');
}
