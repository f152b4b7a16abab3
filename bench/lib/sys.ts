// Process, tool and machine helpers shared by the bench modules. Everything here runs on
// loopback only; children are tracked so an interrupted run leaves no server behind.
import { execFile, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { closeSync, existsSync, lstatSync, openSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const BENCH_DIR = join(ROOT, 'bench');
export const CACHE_DIR = join(BENCH_DIR, '.cache');

const execFileAsync = promisify(execFile);

/** Runs a command to completion and returns its stdout; throws with stderr on a non-zero exit. */
export async function run(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number; maxBuffer?: number } = {},
): Promise<string> {
  try {
    const { stdout } = await execFileAsync(cmd, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      timeout: opts.timeoutMs ?? 600_000,
      maxBuffer: opts.maxBuffer ?? 64 << 20,
      encoding: 'utf8',
    });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${e.message}\n${(e.stderr ?? '').slice(-2000)}`);
  }
}

/** Like run() but never throws: null when the command is missing or fails. */
export async function tryRun(cmd: string, args: string[], opts: Parameters<typeof run>[2] = {}): Promise<string | null> {
  try {
    return await run(cmd, args, opts);
  } catch {
    return null;
  }
}

/** The children this run started, stopped on exit if still alive (by their own pid/group). */
const children = new Set<ChildProcess>();

export function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Spawns a tracked child; `detached` gives it its own process group (killed as a group). */
export function spawnTracked(cmd: string, args: string[], opts: SpawnOptions): ChildProcess {
  return track(spawn(cmd, args, opts));
}

/**
 * Starts a server as a tracked child in its own process group, its output appended to
 * `logPath` (a server that logs every request must not write into a pipe nobody drains), and
 * waits until `ready` holds; fails early with the log's path if the child exits first.
 */
export async function spawnServer(
  what: string,
  cmd: string,
  args: string[],
  opts: { logPath: string; ready: () => Promise<boolean>; timeoutMs?: number } & Pick<SpawnOptions, 'cwd' | 'env'>,
): Promise<ChildProcess> {
  const logFd = openSync(opts.logPath, 'a');
  const child = spawnTracked(cmd, args, { cwd: opts.cwd, env: opts.env, stdio: ['ignore', logFd, logFd], detached: true });
  closeSync(logFd);
  await waitFor(what, opts.ready, opts.timeoutMs ?? 30_000, () =>
    child.exitCode !== null ? `exited with ${child.exitCode}; see ${opts.logPath}` : null,
  );
  return child;
}

/** True once `url` answers anything at all (a 404 or 403 included). */
export async function answers(url: string, timeoutMs = 2000): Promise<boolean> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  await res.arrayBuffer();
  return true;
}

function killChild(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  try {
    // A detached child leads its own group: signal the group (its gunicorn workers etc.).
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  }
}

/** SIGTERM, then SIGKILL after graceMs; resolves when the child has exited. */
export async function stopChild(child: ChildProcess, graceMs = 10_000, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  killChild(child, signal);
  const timer = setTimeout(() => killChild(child, 'SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

let cleanupInstalled = false;
/** On exit or Ctrl-C, kill whatever this run started and is still running. */
export function installCleanup(extra: () => void = () => {}): void {
  if (cleanupInstalled) return;
  cleanupInstalled = true;
  const killAll = () => {
    for (const c of children) killChild(c, 'SIGKILL');
    extra();
  };
  process.once('exit', killAll);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      console.error(`\n[bench] ${sig}: stopping the processes this run started`);
      killAll();
      process.exit(130);
    });
  }
}

export { freePort } from '../../test/support/s3.js';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `probe` until it returns true or the deadline passes. */
export async function waitFor(what: string, probe: () => Promise<boolean>, timeoutMs: number, failed?: () => string | null): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const why = failed?.();
    if (why) throw new Error(`${what}: ${why}`);
    try {
      if (await probe()) return;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`${what}: no answer within ${timeoutMs} ms`);
    await sleep(100);
  }
}

let aptUpdated = false;

/**
 * Makes sure `bin` is on the PATH, installing Debian's `pkg` when it is not and we are root.
 * Throws a message saying what to install otherwise.
 */
export async function ensureTool(bin: string, pkg: string, log: (s: string) => void): Promise<string> {
  const found = await which(bin);
  if (found) return found;
  await ensureDebPackages([pkg], log);
  const after = await which(bin);
  if (!after) throw new Error(`${bin} is still missing after installing the Debian package ${pkg}`);
  return after;
}

/** Installs Debian packages that are not installed yet (root only), checking they exist first. */
export async function ensureDebPackages(pkgs: string[], log: (s: string) => void): Promise<void> {
  const missing: string[] = [];
  for (const p of pkgs) {
    const status = await tryRun('dpkg-query', ['-W', '-f=${Status}', p]);
    if (!status?.includes('install ok installed')) missing.push(p);
  }
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0) {
    throw new Error(`the bench needs the Debian packages ${missing.join(', ')}: run \`sudo apt-get install -y ${missing.join(' ')}\``);
  }
  const installable = async () => {
    for (const p of missing) {
      const policy = await tryRun('apt-cache', ['policy', p]);
      if (!policy || /Candidate: \(none\)/.test(policy) || !/Candidate:/.test(policy)) return p;
    }
    return null;
  };
  if (!aptUpdated && (await installable()) !== null) {
    log(`apt-get update (to find ${missing.join(', ')})`);
    await run('apt-get', ['update'], { timeoutMs: 300_000 });
    aptUpdated = true;
  }
  const absent = await installable();
  if (absent) throw new Error(`Debian package ${absent} is not available from apt (apt-cache policy shows no candidate)`);
  log(`apt-get install -y ${missing.join(' ')}`);
  await run('apt-get', ['install', '-y', '--no-install-recommends', ...missing], {
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    timeoutMs: 600_000,
  });
}

export async function which(bin: string): Promise<string | null> {
  const out = await tryRun('sh', ['-c', `command -v ${bin}`]);
  return out?.trim() || null;
}

/** Resident set size now and peak (VmHWM) of one process, bytes. */
export function procMemory(pid: number): { rss: number; hwm: number } | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = /VmRSS:\s+(\d+) kB/.exec(status);
    const hwm = /VmHWM:\s+(\d+) kB/.exec(status);
    return { rss: Number(rss?.[1] ?? 0) * 1024, hwm: Number(hwm?.[1] ?? 0) * 1024 };
  } catch {
    return null;
  }
}

/**
 * Proportional set size of one process, bytes: its private pages plus its share of the pages it
 * shares (the node binary's text, libraries), so that PSS summed over a process tree counts each
 * shared page once where summed RSS counts it once per process.
 */
export function procPss(pid: number): number | null {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** Resets a process's peak RSS (VmHWM) to its current RSS; false when the kernel refuses. */
export function resetPeakRss(pid: number): boolean {
  try {
    // "5" resets the peak resident set size (Linux >= 4.0); needs the same user or root.
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** The pids of a process and all its descendants. */
export function processTree(rootPid: number): number[] {
  const parentOf = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // pid (comm) state ppid ...; comm may hold spaces and parentheses, so cut at the last ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parentOf.set(Number(name), ppid);
    } catch {
      // exited meanwhile
    }
  }
  const out = [rootPid];
  for (let i = 0; i < out.length; i++) {
    for (const [pid, ppid] of parentOf) if (ppid === out[i]) out.push(pid);
  }
  return out;
}

/** Peak memory of a server over a run, bytes. */
export interface MemoryPeak {
  /** VmHWM of one process, or the peak of the summed RSS of a process tree */
  rss: number;
  /** process trees only: the peak of their summed PSS (shared pages counted once) */
  pss: number | null;
}

/**
 * Samples the summed RSS and the summed PSS of a process tree every `everyMs` until stop();
 * returns the peaks. For multi-process servers (gunicorn workers, WORKERS > 1), where one
 * VmHWM does not tell the whole story.
 */
export function sampleTreeMemory(rootPid: number, everyMs = 100): { stop(): MemoryPeak } {
  const peak: MemoryPeak = { rss: 0, pss: 0 };
  const sample = () => {
    let rss = 0;
    let pss = 0;
    for (const pid of processTree(rootPid)) {
      rss += procMemory(pid)?.rss ?? 0;
      pss += procPss(pid) ?? 0;
    }
    peak.rss = Math.max(peak.rss, rss);
    peak.pss = Math.max(peak.pss!, pss);
  };
  sample();
  const timer = setInterval(sample, everyMs);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return { ...peak };
    },
  };
}

/** Bytes and file count under a directory (apparent sizes, symlinks not followed). */
export function dirUsage(dir: string, filter: (path: string) => boolean = () => true): { bytes: number; files: number } {
  let bytes = 0;
  let files = 0;
  if (!existsSync(dir)) return { bytes, files };
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && filter(p)) {
        bytes += lstatSync(p).size;
        files++;
      }
    }
  };
  walk(dir);
  return { bytes, files };
}

export function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

export interface MachineInfo {
  cpuModel: string;
  cpus: number;
  memoryGiB: number;
  kernel: string;
  node: string;
  tools: Record<string, string>;
}

export async function machineInfo(): Promise<MachineInfo> {
  const version = async (cmd: string, args: string[], re: RegExp = /.*/) => {
    const out = await tryRun(cmd, args, { timeoutMs: 20_000 });
    if (out === null) return 'not installed';
    return (re.exec(out)?.[0] ?? out).trim().split('\n')[0];
  };
  const wrkOut = await new Promise<string>((resolve) => {
    // `wrk -v` prints its version and exits 1.
    execFile('wrk', ['-v'], (_err, stdout, stderr) => resolve(`${stdout}${stderr}`.split('\n')[0] || 'not installed'));
  });
  return {
    cpuModel: cpus()[0]?.model ?? 'unknown',
    cpus: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    node: process.version,
    tools: {
      wrk: wrkOut.trim(),
      restic: await version('restic', ['version'], /restic \S+/),
      moto: await version('python3', ['-c', 'import moto; print("moto", moto.__version__)']),
      python3: await version('/usr/bin/python3', ['--version']),
      gunicorn: await version('/usr/bin/python3', ['-c', 'import gunicorn; print(gunicorn.__version__)']),
      gzip: await version('gzip', ['--version']),
    },
  };
}

/** Short commit of the work tree plus "-dirty" when files differ (read-only git queries). */
export async function commitId(): Promise<{ commit: string; dirty: boolean }> {
  const commit = (await tryRun('git', ['rev-parse', '--short=9', 'HEAD'], { cwd: ROOT }))?.trim() ?? 'unknown';
  const status = await tryRun('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: ROOT });
  return { commit, dirty: !!status && status.trim() !== '' };
}

export function mb(bytes: number): number {
  return bytes / 1e6;
}
