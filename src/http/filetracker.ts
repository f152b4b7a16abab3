// Filetracker protocol v2 under /ft: version, files (GET/HEAD/PUT/DELETE) and list.
import { Hono, type Context } from 'hono';
import { AppError } from '../errors.js';
import type { Logger } from '../log.js';
import type { FileStore, StoredFile } from '../store/file-store.js';
import { formatHttpDate, parseRfc2822 } from './dates.js';
import { lazyRequestSignal, rawRequestTarget, requestBody, requestSignal, streamResponse } from './node-io.js';
import { decodeDirPath, decodeFilePath } from './paths.js';
import { Readable } from 'node:stream';

const SHA256_HEX = /^[0-9a-fA-F]{64}$/;

/**
 * The raw path after `prefix` in the request URL, still percent-encoded. The URL as the
 * client sent it is read when there is one: WHATWG URL parsing would resolve '..' away.
 */
function rawPathAfter(c: Context, prefix: string): string {
  const target = rawRequestTarget(c);
  const q = target.indexOf('?');
  const pathname = q < 0 ? target : target.slice(0, q);
  // The router matched a normalised URL; a raw one spelled differently ('/ft/./files/x',
  // '/ft/%66iles/x') would be cut at the wrong place, so it is refused instead.
  if (!pathname.startsWith(prefix)) {
    throw new AppError('BAD_PATH', `the URL path must start with ${prefix} written literally`);
  }
  return pathname.slice(prefix.length);
}

/** Query parameters decoded as a form (so '+' is a space, as the Python client encodes). */
function queryParam(c: Context, name: string): string | undefined {
  const url = rawRequestTarget(c);
  const q = url.indexOf('?');
  if (q < 0) return undefined;
  return new URLSearchParams(url.slice(q + 1)).get(name) ?? undefined;
}

/** The version a PUT or DELETE carries: the Last-Modified header, else ?last_modified=. */
function requiredVersion(c: Context): number {
  const text = c.req.header('last-modified') ?? queryParam(c, 'last_modified');
  if (text === undefined || text === '') {
    throw new AppError('BAD_VERSION', 'a version is required: send Last-Modified or ?last_modified= (RFC 2822 date)');
  }
  const version = parseRfc2822(text);
  if (version === null) throw new AppError('BAD_VERSION', `not an RFC 2822 date: ${JSON.stringify(text)}`);
  if (version <= 0) throw new AppError('BAD_VERSION', `version must be after 1970-01-01T00:00:00Z, got ${JSON.stringify(text)}`);
  return version;
}

function fileHeaders(f: StoredFile): Record<string, string> {
  return {
    'Content-Type': 'application/octet-stream',
    'Content-Length': String(f.gzipLength),
    'Content-Encoding': 'gzip',
    'Last-Modified': formatHttpDate(f.version),
    'Logical-Size': String(f.logicalSize),
  };
}

/** Content-Length when the client sent a valid one (it always does; chunked bodies have none). */
function contentLength(c: Context): number | undefined {
  const text = c.req.header('content-length');
  return text !== undefined && /^\d{1,15}$/.test(text) ? Number(text) : undefined;
}

function optionalSize(c: Context): number | undefined {
  const text = c.req.header('logical-size');
  if (text === undefined) return undefined;
  if (!/^\d{1,15}$/.test(text.trim())) throw new AppError('BAD_REQUEST', `Logical-Size must be a byte count, got ${JSON.stringify(text)}`);
  return Number(text.trim());
}

function optionalChecksum(c: Context): string | undefined {
  const text = c.req.header('sha256-checksum');
  if (text === undefined) return undefined;
  if (!SHA256_HEX.test(text.trim())) throw new AppError('BAD_REQUEST', `SHA256-Checksum must be 64 hex digits, got ${JSON.stringify(text)}`);
  return text.trim().toLowerCase();
}

export function filetrackerRoutes(store: FileStore, log: Logger): Hono {
  const ft = new Hono();

  const version = (c: Context) => c.json({ protocol_versions: [2] });
  ft.get('/ft/version', version);
  ft.get('/ft/version/', version);

  const getOrHead = async (c: Context) => {
    const path = decodeFilePath(rawPathAfter(c, '/ft/files/'));
    if (c.req.method === 'HEAD') {
      const file = await store.stat(path);
      return file ? new Response(null, { status: 200, headers: fileHeaders(file) }) : c.body(null, 404);
    }
    const opened = await store.open(path, lazyRequestSignal(c));
    if (!opened) return c.body(null, 404);
    const { file, body } = opened;
    if (Buffer.isBuffer(body)) return new Response(body as unknown as BodyInit, { status: 200, headers: fileHeaders(file) });
    body.once('error', (err) => log.error({ err, path }, 'download failed mid-stream'));
    return streamResponse(c, 200, fileHeaders(file), body);
  };
  ft.on('HEAD', '/ft/files/*', getOrHead);
  ft.get('/ft/files/*', getOrHead);

  ft.put('/ft/files/*', async (c) => {
    const path = decodeFilePath(rawPathAfter(c, '/ft/files/'));
    const v = requiredVersion(c);
    const expectedSize = optionalSize(c);
    const expectedSha256 = optionalChecksum(c);
    const out = await store.put({
      path,
      version: v,
      body: requestBody(c),
      bodyLength: contentLength(c),
      gzip: c.req.header('content-encoding') === 'gzip',
      expectedSha256,
      expectedSize,
      signal: lazyRequestSignal(c), // made only for a streamed body (FileStore.put)
    });
    return c.body(null, 200, { 'Content-Type': 'text/plain', 'Content-Length': '0', 'Last-Modified': formatHttpDate(out.version) });
  });

  ft.delete('/ft/files/*', async (c) => {
    const path = decodeFilePath(rawPathAfter(c, '/ft/files/'));
    const v = requiredVersion(c);
    const outcome = await store.delete(path, v, requestSignal(c));
    if (outcome === 'absent') throw new AppError('NOT_FOUND', `File "${path}" not found`);
    return c.body(null, 200, { 'Content-Length': '0' });
  });

  const list = async (c: Context) => {
    const dir = decodeDirPath(rawPathAfter(c, '/ft/list'));
    const cutoffText = queryParam(c, 'last_modified');
    let cutoff = Math.floor(Date.now() / 1000);
    if (cutoffText !== undefined && cutoffText !== '') {
      const parsed = parseRfc2822(cutoffText);
      if (parsed === null) throw new AppError('BAD_VERSION', `not an RFC 2822 date: ${JSON.stringify(cutoffText)}`);
      cutoff = parsed;
    }
    // The first page is read before answering, so a database error is a 500, not a cut-off 200.
    const paths = store.list(dir, cutoff);
    const first = await paths.next();
    const lines = (async function* () {
      if (first.done) return;
      yield Buffer.from(`${first.value}\n`);
      for await (const rel of paths) yield Buffer.from(`${rel}\n`);
    })();
    const body = Readable.from(lines, { objectMode: false });
    body.once('error', (err) => log.error({ err, dir }, 'listing failed mid-stream'));
    return streamResponse(c, 200, { 'Content-Type': 'text/plain; charset=utf-8' }, body);
  };
  ft.get('/ft/list', list);
  ft.get('/ft/list/*', list);

  return ft;
}
