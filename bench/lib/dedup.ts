// Deduplication on the release tars: what s3dedup stores (blocks, maps, descriptor and the
// SQLite metadata) at several chunker settings, against restic (repository v2, compressed) and
// whole-file dedup with gzip -6 (what a whole-file store such as the Rust s3dedup keeps).
import { readFileSync } from 'node:fs';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chunkBuffer, type ChunkerParams } from '../../src/store/chunker.js';
import { bigRequest } from './largefiles.js';
import type { Release } from './dataset.js';
import { startS3dedup } from './s3dedup.js';
import { dirUsage, ensureTool, fileSize, run } from './sys.js';
import { versionQuery } from './targets.js';

export interface ChunkerRow {
  label: string;
  params: ChunkerParams;
  /** blocks + maps + descriptor + SQLite (with WAL) after all releases */
  storedBytes: number;
  blobBytes: number;
  metadataBytes: number;
  objects: number;
  blockObjects: number;
  /** mean blocks per release file (= GET requests for one whole file from S3) */
  blocksPerFile: number;
  /** bytes stored after each release, cumulative */
  growth: number[];
  /** logical MB/s of the uploads (one at a time) */
  putMbps: number;
}

export interface ResticRow {
  version: string;
  storedBytes: number;
  objects: number;
  growth: number[];
  seconds: number;
}

export interface WholeFileRow {
  distinctFiles: number;
  rawBytes: number;
  gzipBytes: number;
}

export interface DedupResult {
  releases: Array<{ version: string; size: number }>;
  logicalBytes: number;
  chunkers: ChunkerRow[];
  restic: ResticRow | string;
  wholeFile: WholeFileRow;
}

export function chunkerConfigs(avgs: number[]): Array<{ label: string; params: ChunkerParams }> {
  return avgs.map((avg) => ({ label: `${avg / 1024} KiB`, params: { minSize: avg / 4, avgSize: avg, maxSize: avg * 4 } }));
}

export async function measureS3dedup(tmp: string, releases: Release[], label: string, params: ChunkerParams, log: (s: string) => void): Promise<ChunkerRow> {
  const dataDir = join(tmp, `dedup-${params.avgSize}`);
  mkdirSync(dataDir, { recursive: true });
  const server = await startS3dedup({
    DATA_DIR: dataDir,
    BLOB_STORE: 'local',
    CHUNK_MIN_SIZE: String(params.minSize),
    CHUNK_AVG_SIZE: String(params.avgSize),
    CHUNK_MAX_SIZE: String(params.maxSize),
  });
  const blobs = join(dataDir, 'blobs');
  const growth: number[] = [];
  let putMs = 0;
  let logical = 0;
  try {
    const version = versionQuery(Math.floor(Date.now() / 1000));
    for (const r of releases) {
      const res = await bigRequest({
        op: 'PUT',
        url: `${server.url}/ft/files/dataset/${r.pkg}-${r.version}.tar${version}`,
        headers: { 'Content-Type': 'application/octet-stream' },
        file: r.tar,
        timeoutMs: 300_000,
      });
      if (res.status !== 200) throw new Error(`PUT ${r.version} at chunker ${label}: ${res.status} ${res.error ?? ''} ${res.body ?? ''}`);
      putMs += res.ms;
      logical += r.size;
      growth.push(dirUsage(blobs).bytes + sqliteBytes(dataDir));
    }
  } finally {
    await server.stop();
  }
  const all = dirUsage(blobs);
  const blocks = dirUsage(join(blobs, 'blocks'));
  const metadataBytes = sqliteBytes(dataDir);
  let blockRefs = 0;
  for (const r of releases) blockRefs += chunkBuffer(readFileSync(r.tar), params).length;
  const row: ChunkerRow = {
    label,
    params,
    storedBytes: all.bytes + metadataBytes,
    blobBytes: all.bytes,
    metadataBytes,
    objects: all.files,
    blockObjects: blocks.files,
    blocksPerFile: blockRefs / releases.length,
    growth,
    putMbps: logical / 1e6 / (putMs / 1000),
  };
  log(`s3dedup chunker ${label}: ${(row.storedBytes / 1e6).toFixed(1)} MB stored in ${row.objects} objects, ${row.blocksPerFile.toFixed(0)} blocks per file`);
  return row;
}

function sqliteBytes(dataDir: string): number {
  const db = join(dataDir, 's3dedup.sqlite');
  return fileSize(db) + fileSize(`${db}-wal`) + fileSize(`${db}-shm`);
}

export async function measureRestic(tmp: string, releases: Release[], log: (s: string) => void): Promise<ResticRow> {
  await ensureTool('restic', 'restic', log);
  const version = (await run('restic', ['version'])).trim().split(' ').slice(0, 2).join(' ');
  const dir = join(tmp, 'restic');
  const repo = join(dir, 'repo');
  mkdirSync(dir, { recursive: true });
  const pw = join(dir, 'password');
  writeFileSync(pw, 'bench-password\n');
  const env = { ...process.env, RESTIC_PASSWORD_FILE: pw, RESTIC_REPOSITORY: repo, RESTIC_CACHE_DIR: join(dir, 'cache') };
  await run('restic', ['init', '--repository-version', '2'], { env });
  const growth: number[] = [];
  const start = performance.now();
  for (const r of releases) {
    await run('restic', ['backup', '--quiet', '--compression', 'auto', r.tar], { env, timeoutMs: 600_000 });
    growth.push(dirUsage(repo).bytes);
  }
  const seconds = (performance.now() - start) / 1000;
  const usage = dirUsage(repo);
  log(`restic: ${(usage.bytes / 1e6).toFixed(1)} MB in ${usage.files} files`);
  return { version, storedBytes: usage.bytes, objects: usage.files, growth, seconds };
}

/** Sum of `gzip -6` sizes of the distinct tars (by SHA-256), cached per tar. */
export async function measureWholeFile(cacheDir: string, releases: Release[]): Promise<WholeFileRow> {
  const cacheFile = join(cacheDir, 'gzip6-sizes.json');
  const cache = existsSync(cacheFile) ? (JSON.parse(readFileSync(cacheFile, 'utf8')) as Record<string, number>) : {};
  const distinct = new Map<string, Release>();
  for (const r of releases) distinct.set(r.sha256, r);
  await Promise.all(
    [...distinct.values()].map(async (r) => {
      if (cache[r.sha256] === undefined) {
        cache[r.sha256] = Number((await run('sh', ['-c', `gzip -6 -c "${r.tar}" | wc -c`])).trim());
      }
    }),
  );
  writeFileSync(cacheFile, JSON.stringify(cache));
  let rawBytes = 0;
  let gzipBytes = 0;
  for (const r of distinct.values()) {
    rawBytes += r.size;
    gzipBytes += cache[r.sha256];
  }
  return { distinctFiles: distinct.size, rawBytes, gzipBytes };
}
