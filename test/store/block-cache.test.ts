import { describe, expect, it } from 'vitest';
import { BlockCache } from '../../src/store/block-cache.js';

describe('BlockCache', () => {
  it('evicts the least recently used entries to stay within its byte capacity', () => {
    const cache = new BlockCache(800);
    for (const k of ['a', 'b', 'c', 'd']) cache.set(k, Buffer.alloc(100, k));
    expect(cache.get('a')?.toString()).toBe('a'.repeat(100)); // a is now the most recent
    for (const k of ['e', 'f', 'g', 'h', 'i']) cache.set(k, Buffer.alloc(100, k));
    expect(cache.size).toBeLessThanOrEqual(800);
    expect(cache.get('b')).toBeUndefined(); // oldest untouched entry went first
    expect(cache.get('a')).toBeDefined();
    expect(cache.get('i')).toBeDefined();
  });

  it('refuses entries larger than an eighth of its capacity, and caches nothing at capacity 0', () => {
    const cache = new BlockCache(800);
    cache.set('big', Buffer.alloc(101));
    expect(cache.get('big')).toBeUndefined();
    const off = new BlockCache(0);
    off.set('x', Buffer.alloc(1));
    expect(off.get('x')).toBeUndefined();
    expect(off.size).toBe(0);
  });
});
