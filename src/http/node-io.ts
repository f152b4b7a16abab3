// Bridges between hono and Node streams. Under @hono/node-server the raw IncomingMessage and
// ServerResponse are used directly (no web-stream copies on the hot path); under
// `app.request()` in tests the web Request/Response are converted instead.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import type { Context } from 'hono';

interface NodeBindings {
  incoming?: IncomingMessage;
  outgoing?: ServerResponse;
}

const bindings = (c: Context): NodeBindings => (c.env ?? {}) as NodeBindings;

/** Path and query exactly as the client sent them (e.g. `/ft/files/a/../b?x=1`). */
export function rawRequestTarget(c: Context): string {
  const { incoming } = bindings(c);
  const url = incoming?.url?.startsWith('/') ? incoming.url : c.req.url; // else absolute-form
  if (url.startsWith('/')) return url;
  const pathStart = url.indexOf('/', url.indexOf('//') + 2);
  return pathStart < 0 ? '/' : url.slice(pathStart);
}

/** The request body as a Node stream. */
export function requestBody(c: Context): Readable {
  const { incoming } = bindings(c);
  if (incoming) return incoming;
  const body = c.req.raw.body;
  return body ? Readable.fromWeb(body as import('node:stream/web').ReadableStream) : Readable.from([]);
}

/** Aborts when the client goes away before the response is finished. */
export function requestSignal(c: Context): AbortSignal {
  const { outgoing } = bindings(c);
  if (!outgoing) return c.req.raw.signal;
  // Made late (lazyRequestSignal): the client may have gone already.
  if (outgoing.destroyed && !outgoing.writableFinished) return AbortSignal.abort();
  const ac = new AbortController();
  outgoing.once('close', () => {
    if (!outgoing.writableFinished) ac.abort();
  });
  return ac.signal;
}

/** requestSignal, made on the first call only (and then the same signal each time). */
export function lazyRequestSignal(c: Context): () => AbortSignal {
  let signal: AbortSignal | undefined;
  return () => (signal ??= requestSignal(c));
}

/** Sends `body` with exactly these headers (including Content-Length), streaming. */
export function streamResponse(c: Context, status: number, headers: Record<string, string>, body: Readable): Response {
  const { outgoing } = bindings(c);
  if (!outgoing) {
    return new Response(Readable.toWeb(body) as unknown as ReadableStream, { status, headers });
  }
  outgoing.writeHead(status, headers);
  pipeline(body, outgoing).catch(() => {
    // Content-Length is exact, so a client sees a cut-off stream as an error; nothing to add.
    outgoing.destroy();
  });
  return RESPONSE_ALREADY_SENT;
}
