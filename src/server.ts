// Runs the HTTP server; on SIGTERM/SIGINT stops accepting, lets requests in flight finish
// (up to shutdownGraceMs), then closes the stores.
import type { AddressInfo } from 'node:net';
import type { Server, ServerResponse } from 'node:http';
import { serve } from '@hono/node-server';
import { CleanerScheduler } from './cleaner/scheduler.js';
import type { MetricsSource } from './cluster.js';
import type { Config } from './config/config.js';
import { createApp } from './http/app.js';
import { moduleLogger } from './log.js';
import { openRuntime, type Runtime } from './runtime.js';
import { PackedBlobStore } from './blobs/packed.js';
import { defaultDeflaterName } from './store/segment.js';
import { watchBlobSpace } from './metrics/metrics.js';

export interface RunningServer {
  runtime: Runtime;
  server: Server;
  /** actual port (useful when LISTEN_PORT=0) */
  port: number;
  stop(): Promise<void>;
}

export async function startServer(config: Config, opts: { metricsSource?: MetricsSource } = {}): Promise<RunningServer> {
  const log = moduleLogger('http');
  const runtime = await openRuntime(config);
  if (runtime.blobs instanceof PackedBlobStore) watchBlobSpace(runtime.blobs);
  const app = createApp({ store: runtime.store, meta: runtime.meta, blobs: runtime.blobs, log, metricsSource: opts.metricsSource });
  const server = await new Promise<Server>((resolve) => {
    const s = serve({ fetch: app.fetch, hostname: config.listenAddress, port: config.listenPort }, () => resolve(s as Server));
  });
  // Uploads of large files can take long; the socket timeout is the client's business.
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;
  const port = (server.address() as AddressInfo).port;
  const scheduler = config.cleaner.enabled
    ? new CleanerScheduler(runtime.cleaner, config.cleaner, moduleLogger('cleaner'))
    : null;
  scheduler?.start();
  log.info(
    { address: config.listenAddress, port, metadata: config.kvstorageType, blobs: runtime.blobs.describe, chunker: config.chunker, deflate: defaultDeflaterName },
    `s3dedup listening on http://${config.listenAddress}:${port}/ft`,
  );

  let stopping: Promise<void> | null = null;
  // While stopping, every response closes its connection, and idle keep-alive sockets are
  // closed as soon as their response ends, so clients move on instead of being served on.
  const inFlight = new Set<ServerResponse>();
  const closeAfter = (res: ServerResponse) => {
    res.shouldKeepAlive = false;
    if (!res.headersSent) res.setHeader('Connection', 'close');
  };
  server.on('request', (_req, res: ServerResponse) => {
    if (stopping) return closeAfter(res);
    inFlight.add(res);
    res.once('close', () => inFlight.delete(res));
  });
  const stop = () =>
    (stopping ??= (async () => {
      log.info('shutting down: no new connections, finishing requests in flight');
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      for (const res of inFlight) closeAfter(res);
      const sweeper = setInterval(() => server.closeIdleConnections(), 100);
      const timer = setTimeout(() => {
        log.warn('shutdown grace period over; closing remaining connections');
        server.closeAllConnections();
      }, config.shutdownGraceMs);
      await scheduler?.stop();
      await closed;
      clearTimeout(timer);
      clearInterval(sweeper);
      await runtime.close();
      log.info('stopped');
    })());
  return { runtime, server, port, stop };
}
