// Runs wrk (Debian's package, C, its own process) with the Lua scripts next to this file and
// reads the JSON line their done() prints. Load is bounded by wrk's -d duration.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const WRK_LUA_DIR = fileURLToPath(new URL('./wrk/', import.meta.url));

export interface WrkResult {
  durationS: number;
  requests: number;
  /** requests per second */
  rps: number;
  /** bytes received */
  bytes: number;
  errors: { connect: number; read: number; write: number; status: number; timeout: number };
  totalErrors: number;
  /** milliseconds */
  latency: { min: number; mean: number; p50: number; p90: number; p99: number; p999: number; max: number };
}

export interface WrkRun {
  url: string;
  script: 'put.lua' | 'get.lua';
  scriptArgs: string[];
  connections: number;
  durationS: number;
  threads?: number;
  timeoutS?: number;
}

export async function runWrk(r: WrkRun): Promise<WrkResult> {
  if (!/^http:\/\/(127\.\d+\.\d+\.\d+|localhost|\[::1\])[:/]/.test(r.url)) {
    throw new Error(`refusing to load ${r.url}: the bench only targets loopback`);
  }
  const threads = r.threads ?? Math.min(2, r.connections);
  const args = [
    '-t', String(threads),
    '-c', String(r.connections),
    '-d', `${r.durationS}s`,
    '--timeout', `${r.timeoutS ?? 10}s`,
    '-s', join(WRK_LUA_DIR, r.script),
    r.url,
    '--',
    ...r.scriptArgs,
  ];
  const out = await new Promise<string>((resolve, reject) => {
    execFile('wrk', args, { timeout: (r.durationS + 60) * 1000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`wrk ${args.join(' ')} failed: ${err.message}\n${stderr}\n${stdout}`));
      else resolve(stdout);
    });
  });
  const line = out.split('\n').find((l) => l.startsWith('WRK_JSON '));
  if (!line) throw new Error(`wrk printed no summary:\n${out}`);
  const j = JSON.parse(line.slice('WRK_JSON '.length)) as {
    duration_us: number;
    requests: number;
    bytes: number;
    errors: WrkResult['errors'];
    latency_us: Record<keyof WrkResult['latency'], number>;
  };
  const ms = (us: number) => us / 1000;
  const durationS = j.duration_us / 1e6;
  return {
    durationS,
    requests: j.requests,
    rps: j.requests / durationS,
    bytes: j.bytes,
    errors: j.errors,
    totalErrors: Object.values(j.errors).reduce((a, b) => a + b, 0),
    latency: {
      min: ms(j.latency_us.min),
      mean: ms(j.latency_us.mean),
      p50: ms(j.latency_us.p50),
      p90: ms(j.latency_us.p90),
      p99: ms(j.latency_us.p99),
      p999: ms(j.latency_us.p999),
      max: ms(j.latency_us.max),
    },
  };
}
