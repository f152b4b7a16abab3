// RFC 2822 versions: parsing what Filetracker clients send and formatting what we answer.
import { describe, expect, it } from 'vitest';
import { formatHttpDate, parseRfc2822 } from '../../src/http/dates.js';

const T = 1_700_000_000; // Tue, 14 Nov 2023 22:13:20 GMT

describe('parseRfc2822', () => {
  it('reads GMT, UT, UTC, +0000 and -0000 as the same instant', () => {
    for (const zone of ['GMT', 'UT', 'UTC', 'Z', '+0000', '-0000', 'gmt']) {
      expect(parseRfc2822(`Tue, 14 Nov 2023 22:13:20 ${zone}`), zone).toBe(T);
    }
  });

  it('subtracts positive and adds negative offsets, minutes included', () => {
    expect(parseRfc2822('Wed, 15 Nov 2023 00:13:20 +0200')).toBe(T);
    expect(parseRfc2822('Tue, 14 Nov 2023 17:13:20 -0500')).toBe(T);
    expect(parseRfc2822('Wed, 15 Nov 2023 03:43:20 +0530')).toBe(T);
    expect(parseRfc2822('Tue, 14 Nov 2023 17:13:20 EST')).toBe(T);
    expect(parseRfc2822('Tue, 14 Nov 2023 14:13:20 PST')).toBe(T);
  });

  it('accepts a missing weekday, a missing comma, no seconds, no zone (UTC) and any letter case', () => {
    expect(parseRfc2822('14 Nov 2023 22:13:20 GMT')).toBe(T);
    expect(parseRfc2822('Tue 14 Nov 2023 22:13:20 GMT')).toBe(T);
    expect(parseRfc2822('Tue, 14 nov 2023 22:13:20 GMT')).toBe(T);
    expect(parseRfc2822('Tue, 14 NOV 2023 22:13 GMT')).toBe(T - 20);
    expect(parseRfc2822('Tue, 14 Nov 2023 22:13:20')).toBe(T);
    expect(parseRfc2822('  Tue, 14 Nov 2023 22:13:20 GMT  ')).toBe(T);
    expect(parseRfc2822('Tue, 4 Nov 2023 22:13:20 GMT')).toBe(T - 10 * 86400);
  });

  it('maps two-digit years 00-49 to 20xx and 50-99 to 19xx, three-digit years to 1900+', () => {
    expect(parseRfc2822('Tue, 14 Nov 23 22:13:20 GMT')).toBe(T);
    expect(parseRfc2822('Thu, 01 Jan 70 00:00:01 GMT')).toBe(1);
    expect(parseRfc2822('Fri, 01 Jan 49 00:00:00 GMT')).toBe(Date.UTC(2049, 0, 1) / 1000);
    expect(parseRfc2822('Sun, 01 Jan 50 00:00:00 GMT')).toBe(Date.UTC(1950, 0, 1) / 1000);
    expect(parseRfc2822('Tue, 14 Nov 123 22:13:20 GMT')).toBe(T);
  });

  it('rejects dates that do not exist', () => {
    expect(parseRfc2822('Fri, 31 Feb 2023 00:00:00 GMT')).toBeNull();
    expect(parseRfc2822('Sat, 29 Feb 2023 00:00:00 GMT')).toBeNull();
    expect(parseRfc2822('Thu, 29 Feb 2024 00:00:00 GMT')).toBe(Date.UTC(2024, 1, 29) / 1000);
    expect(parseRfc2822('Mon, 31 Apr 2023 00:00:00 GMT')).toBeNull();
    expect(parseRfc2822('Mon, 00 Jan 2023 00:00:00 GMT')).toBeNull();
    expect(parseRfc2822('Mon, 32 Jan 2023 00:00:00 GMT')).toBeNull();
    expect(parseRfc2822('Mon, 02 Jan 2023 24:00:00 GMT')).toBeNull();
    expect(parseRfc2822('Mon, 02 Jan 2023 23:60:00 GMT')).toBeNull();
    expect(parseRfc2822('Mon, 02 Jan 2023 23:59:61 GMT')).toBeNull();
  });

  it('answers null for garbage', () => {
    for (const text of [
      '',
      ' ',
      'yesterday',
      '1700000000',
      '2023-11-14T22:13:20Z',
      'Tue, 14 Foo 2023 22:13:20 GMT',
      'Tue, 14 Nov 2023 22:13:20 XYZ',
      'Tue, 14 Nov 2023 22:13:20 +00',
      'Tue, 14 Nov 2023 22:13:20 GMT trailing',
      'Tue, 14 Nov 20234 22:13:20 GMT',
      'Tue, 14 Nov 2023 2213:20 GMT',
      'Tue, 14 Nov 2023',
    ]) {
      expect(parseRfc2822(text), JSON.stringify(text)).toBeNull();
    }
  });
});

describe('formatHttpDate', () => {
  it('writes "Www, DD Mon YYYY HH:MM:SS GMT" with zero padding', () => {
    expect(formatHttpDate(0)).toBe('Thu, 01 Jan 1970 00:00:00 GMT');
    expect(formatHttpDate(T)).toBe('Tue, 14 Nov 2023 22:13:20 GMT');
    expect(formatHttpDate(Date.UTC(2024, 1, 29, 1, 2, 3) / 1000)).toBe('Thu, 29 Feb 2024 01:02:03 GMT');
    expect(formatHttpDate(Date.UTC(2038, 0, 19, 3, 14, 8) / 1000)).toBe('Tue, 19 Jan 2038 03:14:08 GMT');
  });

  it('agrees with Date#toUTCString', () => {
    for (const s of [1, 86_399, 951_782_400, T, 2_147_483_648, 4_102_444_800]) {
      expect(formatHttpDate(s)).toBe(new Date(s * 1000).toUTCString());
    }
  });

  it('round-trips through parseRfc2822 for every whole second tried', () => {
    let x = 12345;
    for (let i = 0; i < 2000; i++) {
      x = (x * 1_103_515_245 + 12_345) % 2_147_483_648;
      const seconds = 1 + (x % 4_102_444_800);
      expect(parseRfc2822(formatHttpDate(seconds))).toBe(seconds);
    }
  });
});
