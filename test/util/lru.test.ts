import { describe, expect, it } from 'vitest';
import { Lru } from '../../src/util/lru.js';

const buf = (k: string, n = 100) => Buffer.alloc(n, k);

describe('Lru', () => {
  it('evicts the least recently used entries to stay within its capacity', () => {
    const cache = new Lru<string, Buffer>(800);
    for (const k of ['a', 'b', 'c', 'd']) cache.set(k, buf(k), 100);
    expect(cache.get('a')?.toString()).toBe('a'.repeat(100)); // a is now the most recent
    for (const k of ['e', 'f', 'g', 'h', 'i']) cache.set(k, buf(k), 100);
    expect(cache.size).toBeLessThanOrEqual(800);
    expect(cache.get('b')).toBeUndefined(); // oldest untouched entry went first
    expect(cache.get('a')).toBeDefined();
    expect(cache.get('i')).toBeDefined();
  });

  it('refuses entries costing more than an eighth of its capacity, and caches nothing at capacity 0', () => {
    const cache = new Lru<string, Buffer>(800);
    cache.set('big', buf('x', 101), 101);
    expect(cache.get('big')).toBeUndefined();
    const off = new Lru<string, Buffer>(0);
    off.set('x', buf('x', 1), 1);
    expect(off.get('x')).toBeUndefined();
    expect(off.size).toBe(0);
  });

  it('replaces an entry set again, and forgets deleted and cleared entries with their cost', () => {
    const cache = new Lru<string, string>(800);
    cache.set('a', 'one', 50);
    cache.set('a', 'two', 70);
    expect(cache.get('a')).toBe('two');
    expect(cache.size).toBe(70);
    cache.set('b', 'b', 30);
    cache.delete('a');
    expect(cache.get('a')).toBeUndefined();
    expect(cache.size).toBe(30);
    cache.delete('missing');
    expect(cache.size).toBe(30);
    cache.clear();
    expect(cache.get('b')).toBeUndefined();
    expect(cache.size).toBe(0);
  });
});
