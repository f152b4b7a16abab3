// Summaries of V8 .cpuprofile files (node --cpu-prof): self time per function and per file, and
// inclusive time of the project's own functions. Paths are shown relative to the repository.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ROOT } from './sys.js';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileEntry {
  name: string;
  where: string;
  ms: number;
  pct: number;
}

export interface ProfileSummary {
  file: string;
  totalMs: number;
  /** share of the wall time the process was busy (not idle) */
  busyPct: number;
  topSelf: ProfileEntry[];
  topFiles: ProfileEntry[];
  /** inclusive time of functions in src/ (each sample counted once per function) */
  topSrcInclusive: ProfileEntry[];
}

function where(cf: CallFrame): string {
  if (!cf.url) return '(native)';
  let path = cf.url;
  if (path.startsWith('file://')) {
    try {
      path = fileURLToPath(path);
    } catch {
      // keep the URL
    }
  }
  if (path.startsWith(ROOT)) path = path.slice(ROOT.length);
  // The compiled build (bench/.cache/dist) mirrors the repository: show src/... paths (of the .js).
  path = path.replace(/^bench\/\.cache\/dist\//, '');
  path = path.replace(/^.*node_modules\//, 'node_modules/');
  return `${path}:${cf.lineNumber + 1}`;
}

export function summarizeProfile(file: string, top = 15): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const selfUs = new Map<number, number>();
  p.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (p.timeDeltas[i] ?? 0)));
  const total = p.timeDeltas.reduce((a, b) => a + b, 0);
  let idle = 0;
  const fnSelf = new Map<string, { name: string; where: string; us: number }>();
  const fileSelf = new Map<string, number>();
  const inclusive = new Map<string, { name: string; where: string; us: number }>();
  for (const [id, us] of selfUs) {
    const cf = byId.get(id)!.callFrame;
    if (cf.functionName === '(idle)') {
      idle += us;
      continue;
    }
    const w = where(cf);
    const key = `${cf.functionName}@${w}`;
    const e = fnSelf.get(key) ?? { name: cf.functionName || '(anonymous)', where: w, us: 0 };
    e.us += us;
    fnSelf.set(key, e);
    const f = w.replace(/:\d+$/, '');
    fileSelf.set(f, (fileSelf.get(f) ?? 0) + us);
    // Walk up the stack: each src/ function counted once per sample.
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const c = byId.get(cur)!.callFrame;
      const cw = where(c);
      if (!cw.startsWith('src/')) continue;
      const k = `${c.functionName}@${cw}`;
      if (seen.has(k)) continue;
      seen.add(k);
      const ie = inclusive.get(k) ?? { name: c.functionName || '(anonymous)', where: cw, us: 0 };
      ie.us += us;
      inclusive.set(k, ie);
    }
  }
  const busy = total - idle;
  const toEntries = (xs: Array<{ name: string; where: string; us: number }>) =>
    xs
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map((x) => ({ name: x.name, where: x.where, ms: x.us / 1000, pct: (100 * x.us) / busy }));
  return {
    file,
    totalMs: total / 1000,
    busyPct: (100 * busy) / total,
    topSelf: toEntries([...fnSelf.values()]),
    topFiles: toEntries([...fileSelf.entries()].map(([f, us]) => ({ name: f, where: '', us }))),
    topSrcInclusive: toEntries([...inclusive.values()]),
  };
}

export function findProfiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => join(dir, f));
}

export function profileMarkdown(title: string, s: ProfileSummary): string {
  const lines = [
    `#### ${title}`,
    '',
    `Profile ${s.totalMs.toFixed(0)} ms, busy ${s.busyPct.toFixed(0)}% (percentages below are of busy time).`,
    '',
    '| self ms | % | function | where |',
    '|---:|---:|---|---|',
    ...s.topSelf.map((e) => `| ${e.ms.toFixed(0)} | ${e.pct.toFixed(1)} | \`${e.name}\` | ${e.where} |`),
    '',
    '| inclusive ms | % | src/ function | where |',
    '|---:|---:|---|---|',
    ...s.topSrcInclusive.slice(0, 10).map((e) => `| ${e.ms.toFixed(0)} | ${e.pct.toFixed(1)} | \`${e.name}\` | ${e.where} |`),
    '',
    '| self ms | % | file |',
    '|---:|---:|---|',
    ...s.topFiles.slice(0, 10).map((e) => `| ${e.ms.toFixed(0)} | ${e.pct.toFixed(1)} | ${e.name} |`),
    '',
  ];
  return lines.join('\n');
}
