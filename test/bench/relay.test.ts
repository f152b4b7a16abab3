// The bench's bare relay (bench/lib/relay.ts) in front of an upstream on loopback: it must pass
// method, path, headers and bodies through unchanged, or the floor it measures is not a relay's.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRelay, type Relay } from '../../bench/lib/relay.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('bench relay', () => {
  const stored = new Map<string, Buffer>();
  let upstream: Server;
  let relay: Relay;
  const logDir = mkdtempSync(join(tmpdir(), 'relay-test-'));

  beforeAll(async () => {
    // A tiny object store: PUT keeps the body under its path, GET returns it with a header.
    upstream = createServer((req, res) => {
      const parts: Buffer[] = [];
      req.on('data', (d: Buffer) => parts.push(d));
      req.on('end', () => {
        if (req.method === 'PUT') {
          stored.set(req.url!, Buffer.concat(parts));
          res.writeHead(200, { 'x-seen-auth': String(req.headers.authorization) }).end();
        } else {
          const body = stored.get(req.url!);
          if (!body) return void res.writeHead(404).end('no such key');
          res.writeHead(200, { 'content-length': String(body.length), 'x-body-sha': sha(body) }).end(body);
        }
      });
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    relay = await startRelay(`http://127.0.0.1:${(upstream.address() as AddressInfo).port}`, logDir);
  }, 30_000);

  afterAll(async () => {
    await relay?.stop();
    await new Promise((r) => upstream.close(r));
    rmSync(logDir, { recursive: true, force: true });
  });

  it('passes a PUT body and its headers through, and the GET answer back unchanged', async () => {
    const body = randomBytes(3 << 20);
    const put = await fetch(`${relay.url}/bucket/a/b.bin`, { method: 'PUT', body, headers: { authorization: 'token-1' } });
    expect(put.status).toBe(200);
    expect(put.headers.get('x-seen-auth')).toBe('token-1');
    expect(sha(stored.get('/bucket/a/b.bin')!)).toBe(sha(body));

    const get = await fetch(`${relay.url}/bucket/a/b.bin`);
    expect(get.status).toBe(200);
    expect(get.headers.get('x-body-sha')).toBe(sha(body));
    expect(sha(Buffer.from(await get.arrayBuffer()))).toBe(sha(body));
  });

  it("passes the upstream's error status and body through", async () => {
    const res = await fetch(`${relay.url}/bucket/missing`);
    expect(res.status).toBe(404);
    expect(await res.text()).toBe('no such key');
  });
});
