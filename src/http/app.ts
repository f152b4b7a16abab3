// The HTTP application: Filetracker routes, health and metrics, and the single error mapping.
import { Hono } from 'hono';
import type { BlobStore } from '../blobs/blob-store.js';
import type { MetricsSource } from '../cluster.js';
import type { Logger } from '../log.js';
import type { MetadataStore } from '../meta/metadata-store.js';
import { metrics as defaultMetrics, type Metrics } from '../metrics/metrics.js';
import type { FileStore } from '../store/file-store.js';
import { errorResponse } from './errors.js';
import { filetrackerRoutes } from './filetracker.js';
import { healthRoutes } from './health.js';
import { metricsMiddleware, metricsRoutes } from './metrics.js';

export interface AppDeps {
  store: FileStore;
  meta: MetadataStore;
  blobs: BlobStore;
  log: Logger;
  /** Instruments to record into and expose; default: the process-wide `metrics`. */
  metrics?: Metrics;
  /** What GET /metrics answers with; default: `metrics`' registry (a cluster worker: all workers'). */
  metricsSource?: MetricsSource;
}

export function createApp(deps: AppDeps): Hono {
  const app = new Hono();
  const m = deps.metrics ?? defaultMetrics;
  app.use('*', metricsMiddleware(m));
  app.route('/', filetrackerRoutes(deps.store, deps.log));
  app.route('/', healthRoutes(deps.meta, deps.blobs));
  app.route('/', metricsRoutes(m, deps.metricsSource));
  app.notFound((c) => c.text(`no route for ${c.req.method} ${c.req.path}\n`, 404));
  app.onError((err, c) => errorResponse(err, c, deps.log));
  return app;
}
