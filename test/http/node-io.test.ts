// The request's abort signal on a real Node HTTP server: made at once or late (lazily, as a GET
// does when its answer is not in the block cache), it aborts when the client has gone.
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Context } from 'hono';
import { describe, expect, it } from 'vitest';
import { lazyRequestSignal, requestSignal } from '../../src/http/node-io.js';

/** Runs `handle` for one request whose client disconnects right after sending it. */
async function withAbandonedRequest(handle: (c: Context, res: ServerResponse, req: IncomingMessage) => Promise<void>): Promise<void> {
  let done!: Promise<void>;
  const server = createServer((req, res) => {
    const c = { env: { incoming: req, outgoing: res } } as unknown as Context;
    done = handle(c, res, req);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  const client = request({ host: '127.0.0.1', port, path: '/x' });
  client.on('error', () => {});
  client.end();
  await new Promise((r) => setTimeout(r, 50));
  client.destroy();
  await new Promise((r) => setTimeout(r, 50));
  await done;
  server.close();
}

describe('requestSignal', () => {
  it('aborts when the client goes away while the request is served', async () => {
    await withAbandonedRequest(async (c, res) => {
      const signal = requestSignal(c);
      expect(signal.aborted).toBe(false);
      await new Promise((r) => res.once('close', r));
      expect(signal.aborted).toBe(true);
    });
  });

  it('made late, after the client went, is aborted already; a lazy one is made once', async () => {
    await withAbandonedRequest(async (c, res) => {
      const lazy = lazyRequestSignal(c);
      await new Promise((r) => res.once('close', r));
      const signal = lazy();
      expect(signal.aborted).toBe(true);
      expect(lazy()).toBe(signal);
    });
  });
});
