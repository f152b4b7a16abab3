// GET /metrics (Prometheus text), GET /metrics/json, and the middleware that counts and times
// every request by its route pattern.
import type { Context, MiddlewareHandler } from 'hono';
import { Hono } from 'hono';
import { routePath } from 'hono/route';
import { localMetrics, type MetricsSource } from '../cluster.js';
import type { Metrics } from '../metrics/metrics.js';

/** Label for requests no route matched: raw paths never become label values. */
export const UNMATCHED_ROUTE = 'unmatched';

/** `source`: where the numbers come from; by default this process's registry. */
export function metricsRoutes(m: Metrics, source: MetricsSource = localMetrics(m.registry)): Hono {
  const app = new Hono();
  app.get('/metrics', async (c) => c.body(await source.text(), 200, { 'Content-Type': m.registry.contentType }));
  app.get('/metrics/json', async (c) => c.json(await source.json()));
  return app;
}

/**
 * Counts and times requests as `http_requests_total{method,route,status}` and
 * `http_request_duration_seconds{method,route}`, where route is the pattern that answered
 * (`/ft/files/*`), so the number of series does not grow with the namespace. Register it
 * first (`app.use('*', ...)`) so it sees every route.
 */
export function metricsMiddleware(m: Metrics): MiddlewareHandler {
  return async (c, next) => {
    const ownIndex = c.req.routeIndex;
    const started = performance.now();
    try {
      await next();
    } finally {
      // Errors are turned into responses by app.onError before they get here; a throw that
      // still escapes is counted as the 500 the server will send.
      const route = answeringRoute(c, ownIndex);
      const method = c.req.method;
      const status = c.finalized ? String(c.res.status) : '500';
      m.httpRequests.inc({ method, route, status });
      m.httpDuration.observe({ method, route }, (performance.now() - started) / 1000);
    }
  };
}

/**
 * The pattern of the handler that answered. Hono leaves routeIndex on the last handler it
 * dispatched to; if that is still this middleware, no route matched (the notFound handler
 * answered).
 */
function answeringRoute(c: Context, ownIndex: number): string {
  if (c.req.routeIndex === ownIndex) return UNMATCHED_ROUTE;
  return routePath(c) || UNMATCHED_ROUTE;
}
