// Storing, reading and listing through a harness's runtime directly (no HTTP): the helpers the
// cleaner, fsck and fault tests share.
import { Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import type { BlobStore } from '../../src/blobs/blob-store.js';
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
