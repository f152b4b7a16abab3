// The server's node flags (src/node-flags.ts) are on every command line that starts it: V8 takes
// them only at start, so a place that forgot them would silently run the slower collector.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SERVER_NODE_FLAGS, WORKER_NODE_FLAGS } from '../../src/node-flags.js';

const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');

describe('the server node flags', () => {
  const flags = SERVER_NODE_FLAGS.join(' ');

  it('are given by npm start, npm run dev, the bin shebang and the Dockerfile', () => {
    const scripts = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts;
    expect(scripts.start).toContain(`node ${flags} dist/src/cli/main.js server`);
    expect(scripts.dev).toContain(`node ${flags} --import tsx src/cli/main.ts server`);
    expect(read('src/cli/main.ts').split('\n')[0]).toBe(`#!/usr/bin/env -S node ${flags}`);
    expect(read('Dockerfile')).toContain(`ENTRYPOINT ["node", ${SERVER_NODE_FLAGS.map((f) => JSON.stringify(f)).join(', ')}, "dist/src/cli/main.js"]`);
  });

  it("are flags this node accepts, the workers' own included, and set the heap limit they name", () => {
    const flags = [...SERVER_NODE_FLAGS, ...WORKER_NODE_FLAGS];
    const script = 'process.stdout.write(JSON.stringify([process.execArgv, require("v8").getHeapStatistics().heap_size_limit]))';
    const run = spawnSync(process.execPath, [...flags, '-e', script], { encoding: 'utf8' });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    const [execArgv, heapLimit] = JSON.parse(run.stdout) as [string[], number];
    expect(execArgv.slice(0, flags.length)).toEqual(flags);
    // the old generation's 2047 MiB plus the young generation's room
    expect(heapLimit / 2 ** 20).toBeGreaterThanOrEqual(2047);
    expect(heapLimit / 2 ** 20).toBeLessThan(2100);
  });
});
