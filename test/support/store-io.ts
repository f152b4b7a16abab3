// Storing, reading and listing through a harness's runtime directly (no HTTP): the helpers the
// cleaner, fsck and fault tests share.
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import type { BlobStore } from '../../src/blobs/blob-store.js';
import { AppError } from '../../src/errors.js';
import type { Harness } from './harness.js';

/** Stores `data` (sent plain) at `path` through the file store. */
export async function putFile(h: Harness, path: string, data: Buffer, version = 1_700_000_000) {
  return h.runtime.store.put({ path, version, body: Readable.from([data]), gzip: false });
}

/** The content stored at `path`, gunzipped from what a GET would send. */
export async function readFile(h: Harness, path: string): Promise<Buffer> {
  const opened = await h.runtime.store.open(path);
  if (!opened) throw new Error(`${path} is missing`);
  if (Buffer.isBuffer(opened.body)) return gunzipSync(opened.body);
  const chunks: Buffer[] = [];
  for await (const c of opened.body) chunks.push(c as Buffer);
  return gunzipSync(Buffer.concat(chunks));
}

/** Every key under `prefix`, sorted. */
export async function listKeys(blobs: BlobStore, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const info of blobs.list(prefix)) keys.push(info.key);
  return keys.sort();
}

/**
 * Four writers, each storing `rounds` files under `dir` made of two of `pieces` (so they share
 * blocks) and deleting every fourth, retrying an upload the cleaner's guard refused (a 503, UNAVAILABLE)
 * (at most 50 attempts per upload). Resolves with the files that should stand and the retry count.
 */
export async function racingWriters(
  h: Harness,
  o: {
    dir: string;
    pieces: Buffer[];
    rounds: number;
    version: number;
    /** keep writing past `rounds`, slower, until this holds (for at most 30 s): the race must overlap what it races */
    until?: () => boolean;
  },
): Promise<{ expected: Map<string, Buffer>; retries: number }> {
  const expected = new Map<string, Buffer>();
  let version = o.version;
  let retries = 0;
  const pick = () => o.pieces[Math.floor(Math.random() * o.pieces.length)];
  const deadline = Date.now() + 30_000;
  const writer = async (w: number) => {
    for (let i = 0; i < o.rounds || (o.until && !o.until() && Date.now() < deadline); i++) {
      // Past its rounds, a writer leaves the cleaner time to catch up with the garbage it made.
      if (i >= o.rounds) await new Promise((r) => setTimeout(r, 20));
      const path = `${o.dir}/w${w}-${i % 3}`;
      const data = Buffer.concat([pick(), pick(), randomBytes(512)]);
      for (let attempt = 1; ; attempt++) {
        try {
          await putFile(h, path, data, ++version);
          expected.set(path, data);
          break;
        } catch (err) {
          if (err instanceof AppError && err.code === 'UNAVAILABLE' && attempt < 50) {
            retries++;
            continue;
          }
          throw err;
        }
      }
      if (i % 4 === 3) {
        await h.runtime.store.delete(path, ++version);
        expected.delete(path);
      }
    }
  };
  await Promise.all([0, 1, 2, 3].map(writer));
  return { expected, retries };
}
