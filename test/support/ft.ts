// Small helpers for speaking Filetracker v2 to a hono app in tests.
import { createHash, randomBytes } from 'node:crypto';
import { gunzipSync, gzipSync } from 'node:zlib';
import type { Hono } from 'hono';
import { formatHttpDate } from '../../src/http/dates.js';

export const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
export const date = (seconds: number): string => formatHttpDate(seconds);
/** A random suffix so runs against a shared bucket or database never collide. */
export const uid = (): string => randomBytes(4).toString('hex');

/** Deterministic pseudo-random bytes (xorshift32), so failures reproduce. */
export function pseudoRandom(size: number, seed = 1): Buffer {
  const out = Buffer.allocUnsafe(size);
  let x = seed | 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

export const enc = (path: string): string => path.split('/').map(encodeURIComponent).join('/');

export interface PutOptions {
  gzip?: boolean;
  checksum?: string | false;
  size?: number | false;
  viaQuery?: boolean;
  headers?: Record<string, string>;
}

/** PUT as the Python client does: gzip level 9 with SHA256-Checksum and Logical-Size. */
export function put(app: Hono, path: string, body: Buffer, version: number, o: PutOptions = {}) {
  const gzip = o.gzip ?? true;
  const headers: Record<string, string> = { ...(o.headers ?? {}) };
  let url = `/ft/files/${enc(path)}`;
  if (o.viaQuery) url += `?last_modified=${encodeURIComponent(date(version)).replace(/%20/g, '+')}`;
  else headers['Last-Modified'] = date(version);
  if (gzip) headers['Content-Encoding'] = 'gzip';
  if (o.checksum !== false) headers['SHA256-Checksum'] = o.checksum ?? sha256(body);
  if (o.size !== false) headers['Logical-Size'] = String(o.size ?? body.length);
  const wire = gzip ? gzipSync(body, { level: 9 }) : body;
  // As the Filetracker client sends it (app.request adds none); small bodies take the buffered path then.
  headers['Content-Length'] ??= String(wire.length);
  return app.request(url, { method: 'PUT', body: new Uint8Array(wire), headers });
}

export async function getContent(app: Hono, path: string): Promise<{ res: Response; content: Buffer | null }> {
  const res = await app.request(`/ft/files/${enc(path)}`);
  if (res.status !== 200) return { res, content: null };
  const raw = Buffer.from(await res.arrayBuffer());
  return { res, content: gunzipSync(raw) };
}

export function del(app: Hono, path: string, version: number) {
  return app.request(`/ft/files/${enc(path)}`, { method: 'DELETE', headers: { 'Last-Modified': date(version) } });
}

export async function list(app: Hono, dir: string, cutoff?: number): Promise<{ status: number; body: string }> {
  let url = dir === '' ? '/ft/list' : `/ft/list/${enc(dir)}`;
  if (cutoff !== undefined) url += `?last_modified=${encodeURIComponent(date(cutoff)).replace(/%20/g, '+')}`;
  const res = await app.request(url);
  return { status: res.status, body: await res.text() };
}
