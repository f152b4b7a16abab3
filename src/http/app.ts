// The HTTP application: Filetracker routes, health, and the single error mapping.
import { Hono } from 'hono';
import type { BlobStore } from '../blobs/blob-store.js';
import type { Logger } from '../log.js';
import type { MetadataStore } from '../meta/metadata-store.js';
import type { FileStore } from '../store/file-store.js';
import { errorResponse } from './errors.js';
import { filetrackerRoutes } from './filetracker.js';
import { healthRoutes } from './health.js';

export interface AppDeps {
  store: FileStore;
  meta: MetadataStore;
  blobs: BlobStore;
  log: Logger;
}

export function createApp(deps: AppDeps): Hono {
  const app = new Hono();
  app.route('/', filetrackerRoutes(deps.store, deps.log));
  app.route('/', healthRoutes(deps.meta, deps.blobs));
  app.notFound((c) => c.text(`no route for ${c.req.method} ${c.req.path}\n`, 404));
  app.onError((err, c) => errorResponse(err, c, deps.log));
  return app;
}
