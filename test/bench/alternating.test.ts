// The bench's small-file ratio from alternating rounds (bench/lib/report.ts alternatingRatios):
// rates are paired within a round, never across rounds, and the median is the lower middle one.
import { describe, expect, it } from 'vitest';
import { alternatingRatios } from '../../bench/lib/report.js';
import type { AlternatingRow } from '../../bench/lib/smallfiles.js';

const row = (target: string, op: 'PUT' | 'GET', round: number, rps: number): AlternatingRow => ({ target, op, round, rps, p99Ms: 1, requests: rps, errors: 0 });

describe('alternatingRatios', () => {
  it('divides the two targets\' rates of each round and takes the median', () => {
    const rows = [
      row('ours', 'PUT', 1, 3000), row('theirs', 'PUT', 1, 1000),
      row('theirs', 'PUT', 2, 2000), row('ours', 'PUT', 2, 4000),
      row('ours', 'PUT', 3, 5000), row('theirs', 'PUT', 3, 1000),
      row('ours', 'GET', 1, 9000), row('theirs', 'GET', 1, 1000),
    ];
    expect(alternatingRatios(rows, 'ours', 'theirs', 'PUT')).toEqual({ ratios: [3, 2, 5], median: 3 });
    expect(alternatingRatios(rows, 'ours', 'theirs', 'GET')).toEqual({ ratios: [9], median: 9 });
  });

  it('skips a round that lacks either target, takes the lower middle of an even count, and gives null for none', () => {
    const rows = [row('ours', 'PUT', 1, 3000), row('theirs', 'PUT', 1, 1000), row('ours', 'PUT', 2, 9000), row('ours', 'PUT', 3, 1000), row('theirs', 'PUT', 3, 1000)];
    expect(alternatingRatios(rows, 'ours', 'theirs', 'PUT')).toEqual({ ratios: [3, 1], median: 1 });
    expect(alternatingRatios(rows, 'ours', 'theirs', 'GET')).toBeNull();
    expect(alternatingRatios([], 'ours', 'theirs', 'PUT')).toBeNull();
  });
});
