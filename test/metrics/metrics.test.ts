// The record* functions: what each call adds to which series.
import { describe, expect, it } from 'vitest';
import { createMetrics, recordCleanerRun, recordLockWait, recordUpload, watchBlobSpace, type Metrics } from '../../src/metrics/metrics.js';

/** One sample from the JSON form; histogram samples are found by their metricName (`x_count`). */
async function value(m: Metrics, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  for (const metric of await m.registry.getMetricsAsJSON()) {
    for (const v of metric.values) {
      const sampleName = (v as { metricName?: string }).metricName ?? metric.name;
      if (sampleName !== name) continue;
      if (Object.entries(labels).every(([k, want]) => v.labels[k] === want)) return v.value;
    }
  }
  return undefined;
}

describe('metrics recorders', () => {
  it('recordUpload adds bytes and block hits/misses', async () => {
    const m = createMetrics({ defaultMetrics: false });
    recordUpload({ logicalBytes: 1000, storedBytesWritten: 300, blocksWritten: 2, blocksReused: 5 }, m);
    recordUpload({ logicalBytes: 500, storedBytesWritten: 0, blocksWritten: 0, blocksReused: 3 }, m);
    expect(await value(m, 'dedup_bytes_logical_total')).toBe(1500);
    expect(await value(m, 'dedup_bytes_stored_total')).toBe(300);
    expect(await value(m, 'dedup_blocks_total', { result: 'hit' })).toBe(8);
    expect(await value(m, 'dedup_blocks_total', { result: 'miss' })).toBe(2);
  });

  it('recordUpload never throws on odd input', () => {
    const m = createMetrics({ defaultMetrics: false });
    expect(() => recordUpload({ logicalBytes: -1, storedBytesWritten: Number.NaN, blocksWritten: 0, blocksReused: Infinity }, m)).not.toThrow();
  });

  it('recordCleanerRun counts runs by result and deletions by kind', async () => {
    const m = createMetrics({ defaultMetrics: false });
    recordCleanerRun({ result: 'success', blocksDeleted: 4, mapsDeleted: 1 }, m);
    recordCleanerRun({ result: 'error', blocksDeleted: 2, orphansDeleted: 7 }, m);
    recordCleanerRun({ result: 'skipped' }, m);
    expect(await value(m, 'cleaner_runs_total', { result: 'success' })).toBe(1);
    expect(await value(m, 'cleaner_runs_total', { result: 'error' })).toBe(1);
    expect(await value(m, 'cleaner_runs_total', { result: 'skipped' })).toBe(1);
    expect(await value(m, 'cleaner_deleted_total', { kind: 'block' })).toBe(6);
    expect(await value(m, 'cleaner_deleted_total', { kind: 'map' })).toBe(1);
    expect(await value(m, 'cleaner_deleted_total', { kind: 'orphan' })).toBe(7);
  });

  it('recordLockWait observes the wait and counts timeouts', async () => {
    const m = createMetrics({ defaultMetrics: false });
    recordLockWait(0.002, false, m);
    recordLockWait(30, true, m);
    expect(await value(m, 'lock_wait_seconds_count')).toBe(2);
    expect(await value(m, 'lock_wait_seconds_sum')).toBeCloseTo(30.002);
    expect(await value(m, 'lock_timeouts_total')).toBe(1);
    const text = await m.registry.metrics();
    expect(text).toContain('lock_wait_seconds_bucket{le="0.005"} 1');
  });

  it('watchBlobSpace reports a packed store\'s bytes and live bytes on each scrape', async () => {
    const m = createMetrics({ defaultMetrics: false });
    let stats = { packs: 1, bytes: 1000, live: 600 };
    watchBlobSpace({ stats: () => stats }, m);
    expect(await m.registry.metrics()).toMatch(/blob_store_bytes\{kind="packed"\} 1000\n[\s\S]*blob_store_bytes\{kind="live"\} 600/);
    stats = { packs: 1, bytes: 700, live: 600 }; // after a compaction
    expect(await m.registry.metrics()).toContain('blob_store_bytes{kind="packed"} 700');
  });

  it('builds independent registries', async () => {
    const a = createMetrics({ defaultMetrics: false });
    const b = createMetrics();
    recordLockWait(1, true, a);
    expect(await value(a, 'lock_timeouts_total')).toBe(1);
    expect(await value(b, 'lock_timeouts_total')).toBe(0);
    expect(await b.registry.metrics()).toContain('process_resident_memory_bytes');
  });
});
