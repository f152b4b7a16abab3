// GET /metrics and /metrics/json, and the request middleware's route-pattern labels.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/http/app.js';
import { moduleLogger } from '../../src/log.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { makeHarness, type Harness } from '../support/harness.js';
import { enc, getContent, put, uid } from '../support/ft.js';

const T0 = 1_700_000_000;

/** The value of one series in Prometheus text, or undefined when absent. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const body = line.slice(name.length + 1, line.indexOf('}'));
    const got = Object.fromEntries(body.split(',').map((kv) => {
      const [k, v] = kv.split('=');
      return [k, JSON.parse(v)];
    }));
    const want = Object.entries(labels);
    if (want.length === Object.keys(got).length && want.every(([k, v]) => got[k] === v)) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

describe('metrics endpoints', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await makeHarness('local');
  });
  afterAll(async () => {
    await h?.close();
  });

  it('counts requests by route pattern, never by raw path', async () => {
    const dir = `metrics-${uid()}`;
    const path = `${dir}/some file.txt`;
    expect((await put(h.app, path, Buffer.from('hello metrics\n'.repeat(100)), T0)).status).toBe(200);
    expect((await getContent(h.app, path)).content!.toString()).toContain('hello metrics');
    expect((await h.app.request(`/ft/list/${dir}`)).status).toBe(200);
    expect((await h.app.request('/ft/list')).status).toBe(200);
    expect((await h.app.request(`/no/such/${dir}`)).status).toBe(404);
    // A 400 from the error mapping is still labelled with its route.
    expect((await h.app.request(`/ft/files/${enc(path)}`, { method: 'PUT', body: 'x' })).status).toBe(400);

    const res = await h.app.request('/metrics');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    expect(sample(text, 'http_requests_total', { method: 'PUT', route: '/ft/files/*', status: '200' })).toBe(1);
    expect(sample(text, 'http_requests_total', { method: 'PUT', route: '/ft/files/*', status: '400' })).toBe(1);
    expect(sample(text, 'http_requests_total', { method: 'GET', route: '/ft/files/*', status: '200' })).toBe(1);
    expect(sample(text, 'http_requests_total', { method: 'GET', route: '/ft/list/*', status: '200' })).toBe(1);
    expect(sample(text, 'http_requests_total', { method: 'GET', route: '/ft/list', status: '200' })).toBe(1);
    expect(sample(text, 'http_requests_total', { method: 'GET', route: 'unmatched', status: '404' })).toBe(1);
    expect(sample(text, 'http_request_duration_seconds_count', { method: 'GET', route: '/ft/files/*' })).toBe(1);
    expect(text).toContain('# TYPE http_request_duration_seconds histogram');
    expect(text).toContain('dedup_bytes_logical_total');
    expect(text).toContain('lock_timeouts_total');
    expect(text).toContain('process_cpu_user_seconds_total');
    // No raw path (file names, directories) ever becomes a label value.
    expect(text).not.toContain(dir);
    expect(text).not.toContain('some file');
  });

  it('serves the same registry as JSON', async () => {
    await h.app.request('/health');
    const res = await h.app.request('/metrics/json');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    const json = (await res.json()) as Array<{ name: string; type: string; values: Array<{ labels: Record<string, string>; value: number }> }>;
    const requests = json.find((m) => m.name === 'http_requests_total')!;
    expect(requests.type).toBe('counter');
    expect(requests.values.some((v) => v.labels.route === '/health' && v.labels.status === '200' && v.value >= 1)).toBe(true);
    expect(json.some((m) => m.name === 'http_request_duration_seconds' && m.type === 'histogram')).toBe(true);
  });

  it('keeps the registries of two apps apart', async () => {
    const m = createMetrics({ defaultMetrics: false });
    const app = createApp({ store: h.runtime.store, meta: h.runtime.meta, blobs: h.runtime.blobs, log: moduleLogger('http'), metrics: m });
    await app.request('/ft/version');
    const text = await (await app.request('/metrics')).text();
    expect(sample(text, 'http_requests_total', { method: 'GET', route: '/ft/version', status: '200' })).toBe(1);
    expect(text).not.toContain('/ft/files/*');
    expect(text).not.toContain('process_cpu_user_seconds_total');
    // The harness app's registry did not see that request.
    const other = await (await h.app.request('/metrics')).text();
    expect(sample(other, 'http_requests_total', { method: 'GET', route: '/ft/version', status: '200' })).toBeUndefined();
  });
});

