// The dedup dataset: successive releases of a large npm package, each fetched with `npm pack`,
// unpacked, and packed again into one uncompressed tar (sorted names, fixed owner and mtime, so
// the same release always gives the same bytes). Cached under bench/.cache/dataset/.
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from './sys.js';

/** Default: ten successive stable releases of TypeScript (about 32 MB unpacked each). */
export const DEFAULT_DATASET = {
  pkg: 'typescript',
  versions: ['5.4.2', '5.4.3', '5.4.4', '5.4.5', '5.5.2', '5.5.3', '5.5.4', '5.6.2', '5.6.3', '5.7.2'],
};

export interface Release {
  pkg: string;
  version: string;
  tar: string;
  size: number;
  sha256: string;
}

/** "pkg@v1,v2,..." (BENCH_DATASET) or the default. */
export function datasetSpec(spec = process.env.BENCH_DATASET): { pkg: string; versions: string[] } {
  if (!spec) return DEFAULT_DATASET;
  const at = spec.lastIndexOf('@');
  if (at <= 0) throw new Error(`BENCH_DATASET must look like pkg@1.0.0,1.0.1,..., got ${spec}`);
  return { pkg: spec.slice(0, at), versions: spec.slice(at + 1).split(',').filter(Boolean) };
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export async function datasetTars(cacheDir: string, pkg: string, versions: string[], log: (s: string) => void): Promise<Release[]> {
  const dir = join(cacheDir, 'dataset', pkg.replace(/[@/]/g, '_'));
  mkdirSync(dir, { recursive: true });
  const out: Release[] = [];
  for (const version of versions) {
    const tar = join(dir, `${pkg.replace(/[@/]/g, '_')}-${version}.tar`);
    const meta = `${tar}.json`;
    if (!existsSync(meta) || !existsSync(tar)) {
      const work = mkdtempSync(join(dir, '.work-'));
      try {
        log(`npm pack ${pkg}@${version}`);
        const packed = JSON.parse(await run('npm', ['pack', `${pkg}@${version}`, '--json', '--silent', '--pack-destination', work], { cwd: work })) as Array<{ filename: string }>;
        const tgz = join(work, packed[0].filename.replace(/^@/, '').replace(/\//g, '-'));
        const unpacked = join(work, 'x');
        mkdirSync(unpacked);
        await run('tar', ['-xzf', tgz, '-C', unpacked]);
        await run('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '--mtime=@499162500', '-cf', `${tar}.tmp`, '-C', unpacked, '.']);
        renameSync(`${tar}.tmp`, tar);
        writeFileSync(meta, JSON.stringify({ size: statSync(tar).size, sha256: await sha256File(tar) }));
      } finally {
        rmSync(work, { recursive: true, force: true });
      }
    }
    const m = JSON.parse(readFileSync(meta, 'utf8')) as { size: number; sha256: string };
    out.push({ pkg, version, tar, size: m.size, sha256: m.sha256 });
  }
  return out;
}
