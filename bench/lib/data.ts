// Synthetic data: pseudo-English text (compresses about 3:1, like source code or logs) and
// random bytes, both from seeded generators so every run measures the same bytes.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';

/** Pseudo-English from a seeded PRNG: compresses roughly 3:1 like source code or logs, not 100:1 like a repeated line. */
export function textLike(length: number, seed = 12_345): Buffer {
  let s = seed >>> 0;
  const next = (): number => (s = (Math.imul(s, 1_103_515_245) + 12_345) >>> 0) >>> 8;
  const letters = 'etaoinshrdlcumwfgypbvkjxqz';
  const vocabulary = Array.from({ length: 4000 }, () => {
    let word = '';
    for (let n = 1 + (next() % 9); n > 0; n--) word += letters[Math.min(next() % 40, next() % 26)];
    return word;
  });
  const out = Buffer.allocUnsafe(length);
  let at = 0;
  while (at < length) {
    const word = vocabulary[Math.min(next() % 4000, next() % 4000)];
    const sep = next() % 12 === 0 ? '.\n' : next() % 9 === 0 ? ', ' : ' ';
    at += out.write(word + sep, at);
  }
  return out;
}

/** Deterministic incompressible bytes (xorshift128+ would do; SHA-256 in counter mode is simpler to trust). */
export function randomLike(length: number, seed = 1): Buffer {
  const out = Buffer.allocUnsafe(length);
  const key = Buffer.from(`bench-random-${seed}`);
  let counter = 0;
  for (let at = 0; at < length; at += 32) {
    const h = createHash('sha256').update(key).update(String(counter++)).digest();
    h.copy(out, at, 0, Math.min(32, length - at));
  }
  return out;
}

export interface LargeFile {
  /** the bytes as stored (logical content) */
  path: string;
  size: number;
  sha256: string;
  /** gzip of the content at level 9, as the Filetracker client would send it */
  gzPath?: string;
  gzSize?: number;
}

const CHUNK = 16 << 20;

/** Writes (once, cached) a large file of `kind` and its gzip; returns paths and digests. */
export async function largeFile(cacheDir: string, kind: 'text' | 'random', size: number, withGzip: boolean, log: (s: string) => void): Promise<LargeFile> {
  const path = `${cacheDir}/large-${kind}-${size}.bin`;
  const meta = `${path}.json`;
  mkdirSync(dirname(path), { recursive: true });
  if (!existsSync(meta)) {
    log(`generating ${size / 2 ** 20} MiB of ${kind} data in ${path}`);
    const hash = createHash('sha256');
    const out = createWriteStream(`${path}.tmp`);
    for (let at = 0, i = 0; at < size; at += CHUNK, i++) {
      const n = Math.min(CHUNK, size - at);
      const chunk = kind === 'text' ? textLike(n, 1000 + i) : randomLike(n, 1000 + i);
      hash.update(chunk);
      if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
    }
    await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
    renameSync(`${path}.tmp`, path);
    writeFileSync(meta, JSON.stringify({ size, sha256: hash.digest('hex') }));
  }
  const { sha256 } = JSON.parse(readFileSync(meta, 'utf8')) as { sha256: string };
  const file: LargeFile = { path, size, sha256 };
  if (withGzip) {
    const gzPath = `${path}.gz`;
    if (!existsSync(gzPath)) {
      log(`gzip -9 of ${path} (once; cached)`);
      await pipeline(createReadStream(path), createGzip({ level: 9 }), createWriteStream(`${gzPath}.tmp`));
      renameSync(`${gzPath}.tmp`, gzPath);
    }
    file.gzPath = gzPath;
    file.gzSize = (await import('node:fs')).statSync(gzPath).size;
  }
  return file;
}
