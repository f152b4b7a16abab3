// The real server process, as a user runs it: curl --compressed against a multi-block file,
// graceful SIGTERM during an upload, a client that vanishes mid-upload, and start-up refusals
// (invalid configuration, a store created with other chunker parameters).
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { Agent, request, type IncomingHttpHeaders, type ClientRequest } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { date, enc, pseudoRandom, uid } from '../support/ft.js';
import { harnessEnv } from '../support/harness.js';
import { startServerProcess, type ServerProcess } from '../support/server-process.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CURL = '/usr/bin/curl';
const MiB = 1 << 20;
const T0 = 1_700_000_000;

/** ~3 MiB over many blocks: random (stored), text (deflated), random again. */
function mixedContent(seed: number): Buffer {
  const lines: string[] = [];
  for (let i = 0, length = 0; length < MiB; i++) {
    const line = `line ${i}: the quick brown fox ${(i * 7919 + seed) % 1000} jumps\n`;
    lines.push(line);
    length += line.length;
  }
  return Buffer.concat([pseudoRandom(MiB, seed), Buffer.from(lines.join('')).subarray(0, MiB), pseudoRandom(MiB + 12_345, seed + 1)]);
}

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** Waits for the response of `req` and reads its body. */
function reply(req: ClientRequest): Promise<Reply> {
  return new Promise((resolve, reject) => {
    req.once('error', reject);
    req.once('response', (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.once('error', reject);
      res.once('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(parts) }));
    });
  });
}

function send(url: string, method: string, headers: Record<string, string> = {}, body?: Buffer): Promise<Reply> {
  const req = request(url, { method, headers: body ? { ...headers, 'Content-Length': String(body.length) } : headers, agent: false });
  const done = reply(req);
  req.end(body);
  return done;
}

/** Writes `piece` and resolves once it is handed to the socket (backpressure respected). */
function write(req: ClientRequest, piece: Buffer): Promise<void> {
  return new Promise((resolve, reject) => req.write(piece, (err) => (err ? reject(err) : resolve())));
}

/** GET and gunzip; checks that Content-Length is what was sent. */
async function download(base: string, path: string): Promise<Buffer | null> {
  const r = await send(`${base}/ft/files/${enc(path)}`, 'GET');
  if (r.status === 404) return null;
  expect(r.status).toBe(200);
  expect(Number(r.headers['content-length'])).toBe(r.body.length);
  return gunzipSync(r.body);
}

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

function run(cmd: string, args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: options.cwd, env: options.env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 20_000);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out), stderr: err });
    });
  });
}

/** `s3dedup server` with exactly this environment (nothing inherited but PATH and HOME). */
function runCli(env: Record<string, string>): Promise<Run> {
  return run(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'server'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? tmpdir(), LOG_LEVEL: 'warn', LISTEN_ADDRESS: '127.0.0.1', LISTEN_PORT: '0', ...env },
    timeoutMs: 20_000,
  });
}

/** Resolves once a TCP connect to `port` is refused; throws if it is still accepted after `ms`. */
async function waitRefused(port: number, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const outcome = await new Promise<string>((resolve) => {
      const s = connect({ port, host: '127.0.0.1' });
      s.once('connect', () => {
        s.destroy();
        resolve('connected');
      });
      s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    });
    if (outcome === 'ECONNREFUSED') return;
    if (Date.now() > deadline) throw new Error(`port ${port} still answers (${outcome}) ${ms} ms after SIGTERM`);
    await sleep(25);
  }
}

function exitOf(server: ServerProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  const { child } = server;
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

const cleanups: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const fn of cleanups.reverse()) await fn().catch(() => undefined);
});

/** A server on local disk in a fresh data dir; killed and removed after the file. */
async function localServer(extra: Record<string, string> = {}): Promise<{ server: ServerProcess; env: Record<string, string> }> {
  // BLOB_STORE=local: a developer's S3_ENDPOINT in the environment must not redirect the blocks.
  const env = await harnessEnv('local', { BLOB_STORE: 'local', ...extra });
  cleanups.push(() => rm(env.DATA_DIR, { recursive: true, force: true }));
  const server = await startServerProcess(env);
  cleanups.push(async () => {
    if (server.child.exitCode === null && server.child.signalCode === null) server.child.kill('SIGKILL');
  });
  return { server, env };
}

describe('s3dedup server process', () => {
  let server: ServerProcess;
  beforeAll(async () => {
    ({ server } = await localServer());
  });

  it('serves a multi-block file to `curl --compressed` whole and byte-exact', async () => {
    const content = mixedContent(5);
    const path = `curl-${uid()}/mixed.bin`;
    const put = await send(`${server.url}/ft/files/${enc(path)}`, 'PUT', { 'Last-Modified': date(T0) }, content);
    expect(put.status).toBe(200);

    const r = await run(CURL, ['--compressed', '-s', '-S', `${server.url}/ft/files/${enc(path)}`]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.length).toBe(content.length);
    expect(r.stdout.equals(content)).toBe(true);

    // And what curl sees on the wire is one gzip member of exactly Content-Length bytes.
    const head = await run(CURL, ['-s', '-S', '-o', '/dev/null', '-D', '-', `${server.url}/ft/files/${enc(path)}`]);
    const headers = head.stdout.toString();
    expect(headers).toMatch(/^content-encoding: gzip\r$/im);
    expect(headers).toMatch(new RegExp(`^logical-size: ${content.length}\\r$`, 'im'));
  });

  it('answers 400 to a path with ".." sent as is', async () => {
    const r = await run(CURL, ['-s', '-S', '--path-as-is', '-D', '-', '-o', '/dev/null', `${server.url}/ft/files/a/../b`]);
    expect(r.code).toBe(0);
    const headers = r.stdout.toString();
    expect(headers).toMatch(/^HTTP\/1\.1 400 /);
    expect(headers).toMatch(/^x-exception: Path cannot contain "\.\."\.\r$/im);
    const put = await run(CURL, ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--path-as-is', '-X', 'PUT', '-H', `Last-Modified: ${date(T0)}`, '--data-binary', 'x', `${server.url}/ft/files/a/../b`]);
    expect(put.stdout.toString()).toBe('400');
  });

  // The router matches the normalised URL ('/ft/./files/x' -> '/ft/files/x', '%66' -> 'f') while
  // the file path is cut from the raw URL by the prefix's length: the two must agree, or the
  // file lands under another name ('/ft/./files/abc' stored "s/abc").
  it('never stores a file under a path other than the one the URL names', async () => {
    const id = uid();
    for (const [target, name] of [
      [`/ft/./files/dot-${id}`, `dot-${id}`],
      [`/ft/%66iles/pct-${id}`, `pct-${id}`],
    ]) {
      const r = await run(CURL, ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--path-as-is', '-X', 'PUT', '-H', `Last-Modified: ${date(T0)}`, '--data-binary', 'hello', `${server.url}${target}`]);
      const status = r.stdout.toString();
      expect(['200', '400'], target).toContain(status);
      if (status === '200') expect((await send(`${server.url}/ft/files/${name}`, 'HEAD')).status, target).toBe(200);
    }
    const listing = (await send(`${server.url}/ft/list`, 'GET')).body.toString().split('\n');
    expect(listing.filter((p) => p.endsWith(id) && !p.startsWith('dot-') && !p.startsWith('pct-'))).toEqual([]);
  });

  it('commits nothing when the client disconnects mid-upload, and keeps serving', async () => {
    const path = `abort-${uid()}/half.bin`;
    const content = mixedContent(9);
    const req = request(`${server.url}/ft/files/${enc(path)}`, {
      method: 'PUT',
      headers: { 'Content-Length': String(content.length), 'Last-Modified': date(T0) },
      agent: false,
    });
    const failed = new Promise<void>((resolve) => req.once('error', () => resolve()));
    const half = content.length >> 1;
    for (let off = 0; off < half; off += 256 * 1024) await write(req, content.subarray(off, Math.min(half, off + 256 * 1024)));
    await sleep(200);
    req.destroy();
    await failed;
    await sleep(300);

    expect((await send(`${server.url}/ft/files/${enc(path)}`, 'HEAD')).status).toBe(404);
    expect(await download(server.url, path)).toBeNull();
    const listing = await send(`${server.url}/ft/list/${enc(path.split('/')[0])}`, 'GET');
    expect(listing.status).toBe(200);
    expect(listing.body.toString()).toBe('');
    expect(server.child.exitCode).toBeNull();

    // The same path takes a complete upload afterwards (no lock or state left behind).
    expect((await send(`${server.url}/ft/files/${enc(path)}`, 'PUT', { 'Last-Modified': date(T0) }, content)).status).toBe(200);
    expect((await download(server.url, path))!.equals(content)).toBe(true);
  });

  it('commits nothing when the client disconnects inside a small body (read whole, without an abort signal)', async () => {
    const path = `abort-${uid()}/small.txt`;
    const content = Buffer.from('a small file the client never finishes sending\n'.repeat(80));
    const req = request(`${server.url}/ft/files/${enc(path)}`, {
      method: 'PUT',
      headers: { 'Content-Length': String(content.length), 'Last-Modified': date(T0) },
      agent: false,
    });
    const failed = new Promise<void>((resolve) => req.once('error', () => resolve()));
    await write(req, content.subarray(0, 1000));
    await sleep(200);
    req.destroy();
    await failed;
    await sleep(300);

    expect((await send(`${server.url}/ft/files/${enc(path)}`, 'HEAD')).status).toBe(404);
    expect((await send(`${server.url}/ft/files/${enc(path)}`, 'PUT', { 'Last-Modified': date(T0) }, content)).status).toBe(200);
    expect((await download(server.url, path))!.equals(content)).toBe(true);
  });

  it('finishes an upload in flight on SIGTERM, refuses new connections, exits 0, and the file survives a restart', async () => {
    const { server: victim, env } = await localServer();
    const exited = exitOf(victim);
    const path = `sigterm-${uid()}/slow.bin`;
    const content = mixedContent(21);
    const pieces = [content.subarray(0, MiB), content.subarray(MiB, 2 * MiB), content.subarray(2 * MiB)];

    const req = request(`${victim.url}/ft/files/${enc(path)}`, {
      method: 'PUT',
      headers: { 'Content-Length': String(content.length), 'Last-Modified': date(T0) },
      agent: false,
    });
    const answered = reply(req);
    await write(req, pieces[0]);
    await sleep(150);

    victim.child.kill('SIGTERM');
    await waitRefused(victim.port);

    for (const piece of pieces.slice(1)) {
      await sleep(100);
      await write(req, piece);
    }
    req.end();
    const res = await answered;
    expect(res.status, res.body.toString()).toBe(200);
    expect(res.headers['last-modified']).toBe(date(T0));
    expect(await exited).toEqual({ code: 0, signal: null });

    const again = await startServerProcess(env);
    try {
      const got = await download(again.url, path);
      expect(got).not.toBeNull();
      expect(got!.length).toBe(content.length);
      expect(got!.equals(content)).toBe(true);
    } finally {
      expect(await again.stop()).toBe(0);
    }
  });

  // Keep-alive clients (the Python client uses a requests session) must not hold a stopping
  // server open: the answer to a request in flight at SIGTERM should say `Connection: close`,
  // and the connection should not keep carrying new requests until the grace period
  // (SHUTDOWN_GRACE_MS, 30 s) ends with every connection cut.
  it('closes keep-alive connections after SIGTERM instead of serving them until the grace period ends', async () => {
    const { server: victim } = await localServer();
    const exited = exitOf(victim);
    let exitedAt = 0;
    void exited.then(() => (exitedAt = Date.now()));
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    cleanups.push(async () => agent.destroy());
    const viaAgent = (method: string, path: string, headers: Record<string, string> = {}) => {
      const req = request(`${victim.url}${path}`, { method, headers, agent });
      return { req, done: reply(req) };
    };

    const warm = viaAgent('GET', '/ft/version');
    warm.req.end();
    expect((await warm.done).headers.connection).toBe('keep-alive');

    const body = Buffer.from('x'.repeat(200_000));
    const put = viaAgent('PUT', `/ft/files/keepalive-${uid()}`, { 'Content-Length': String(body.length), 'Last-Modified': date(T0) });
    await write(put.req, body.subarray(0, 100_000));
    await sleep(150);
    victim.child.kill('SIGTERM');
    await waitRefused(victim.port);
    put.req.end(body.subarray(100_000));
    const res = await put.done;
    expect(res.status).toBe(200);
    const answeredAt = Date.now();

    // The client goes on using its pooled connection, as a busy client would.
    let servedAfterSigterm = 0;
    while (exitedAt === 0 && Date.now() - answeredAt < 3_000) {
      await sleep(300);
      const next = viaAgent('GET', '/ft/version');
      next.req.end();
      if ((await next.done.catch(() => null))?.status === 200) servedAfterSigterm++;
    }
    expect({ connection: res.headers.connection, exitedWithin3s: exitedAt !== 0, servedAfterSigterm }).toEqual({
      connection: 'close',
      exitedWithin3s: true,
      servedAfterSigterm: 0,
    });
    expect(await exited).toEqual({ code: 0, signal: null });
  });
});

describe('s3dedup server start-up refusals', () => {
  let dataDir: string;
  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 's3dedup-cli-'));
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
  });

  it.concurrent.each([
    [{ LISTEN_PORT: 'abc' }, /LISTEN_PORT must be a whole number .*"abc"/],
    [{ KVSTORAGE_TYPE: 'mysql' }, /KVSTORAGE_TYPE must be one of sqlite, postgres, got "mysql"/],
    [{ LOCKS_TYPE: 'postgres' }, /LOCKS_TYPE=postgres needs KVSTORAGE_TYPE=postgres/],
    [{ CHUNK_AVG_SIZE: '1000' }, /CHUNK_AVG_SIZE.*avgSize must be a power of two.*1000/],
  ])('exits non-zero on invalid configuration %o', async (bad, message) => {
    const r = await runCli({ DATA_DIR: join(dataDir, uid()), ...(bad as Record<string, string>) });
    expect(r.signal, 'still running after 20 s: the configuration was accepted').toBeNull();
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/^s3dedup: invalid configuration:/);
    expect(r.stderr).toMatch(message);
  });

  it('reports all invalid values at once', async () => {
    const r = await runCli({ DATA_DIR: join(dataDir, uid()), LISTEN_PORT: 'abc', KVSTORAGE_TYPE: 'mysql' });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/LISTEN_PORT/);
    expect(r.stderr).toMatch(/KVSTORAGE_TYPE/);
  });

  it('refuses a data dir whose descriptor records other chunker parameters', async () => {
    const chunker = { CHUNK_AVG_SIZE: '65536', CHUNK_MIN_SIZE: '16384', CHUNK_MAX_SIZE: '262144' };
    const { server, env } = await localServer(chunker);
    expect(await server.stop()).toBe(0);

    const withDefaults = Object.fromEntries(Object.entries(env).filter(([k]) => !k.startsWith('CHUNK_')));
    const r = await runCli(withDefaults);
    expect(r.signal, 'still running after 20 s: the store was accepted').toBeNull();
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/chunker/);
    expect(r.stderr).toMatch(/different layout/);

    // With the recorded parameters it starts again.
    const ok = await startServerProcess(env);
    expect(await ok.stop()).toBe(0);
  });
});
