// The bench reports a large-file row measured on several fresh servers as the median of its runs
// (bench/lib/largefiles.ts mergeRuns), with the worst memory and any failure kept.
import { describe, expect, it } from 'vitest';
import { mergeRuns, type LargeRow } from '../../bench/lib/largefiles.js';

const row = (over: Partial<LargeRow>): LargeRow => ({
  target: 's3dedup sqlite+local',
  data: 'random',
  body: 'plain',
  op: 'PUT',
  sizeBytes: 1,
  seconds: 1,
  mbps: 100,
  wireBytes: 1,
  peakRssBytes: 10,
  peakPssBytes: null,
  verified: null,
  ...over,
});

describe('mergeRuns', () => {
  it('gives the median run with every run listed and the highest peak memory', () => {
    const [merged, ...rest] = mergeRuns([row({ mbps: 300, seconds: 0.9, peakRssBytes: 5 }), row({ mbps: 100, seconds: 2.7, peakRssBytes: 30 }), row({ mbps: 250, seconds: 1.1, peakRssBytes: 20 })]);
    expect(rest).toEqual([]);
    expect(merged.mbps).toBe(250);
    expect(merged.seconds).toBe(1.1);
    expect(merged.runsMbps).toEqual([300, 100, 250]);
    expect(merged.peakRssBytes).toBe(30);
    expect(merged.peakPssBytes).toBeNull();
  });

  it('keeps rows of other targets and ops apart, and single runs as they are', () => {
    const get = row({ op: 'GET', mbps: 900, verified: true });
    const merged = mergeRuns([row({ mbps: 1 }), get, row({ mbps: 3 })]);
    expect(merged).toHaveLength(2);
    expect(merged[1]).toBe(get);
    expect(merged[0].runsMbps).toEqual([1, 3]);
  });

  it('fails the row when any run failed or read back wrong', () => {
    expect(mergeRuns([row({}), row({ error: 'status 500' }), row({})])[0].error).toBe('status 500');
    expect(mergeRuns([row({ op: 'GET', verified: true }), row({ op: 'GET', verified: false })])[0].verified).toBe(false);
  });
});
