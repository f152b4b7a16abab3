import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { EXTENT_ID_DIGITS, blobKeysOf, blockKey, extentKey, mapKey, parseKey } from '../../src/store/keys.js';

const hash = createHash('sha256').update('x').digest('hex');
const extentId = 'ab'.repeat(EXTENT_ID_DIGITS / 2);

describe('parseKey', () => {
  it("names the kind and id of this store's own keys", () => {
    expect(parseKey(blockKey(hash))).toEqual({ kind: 'block', id: hash });
    expect(parseKey(mapKey(hash))).toEqual({ kind: 'map', id: hash });
    expect(parseKey(extentKey(extentId))).toEqual({ kind: 'extent', id: extentId });
  });

  it('refuses anything else: other prefixes, wrong lengths, upper case, non-hex, nested paths', () => {
    for (const key of [
      's3dedup.json',
      `other/${hash}`,
      `blocks/${hash.slice(1)}`,
      `blocks/${hash}0`,
      `blocks/${hash.toUpperCase()}`,
      `maps/${'g'.repeat(64)}`,
      `extents/${hash}`, // a 64-digit id is not an extent's
      `blocks/${hash}/x`,
      'blocks/',
    ]) {
      expect(parseKey(key), key).toBeNull();
    }
  });
});

describe('blobKeysOf', () => {
  it('lists the map, every block and each extent once', () => {
    const blocks = [
      { hash: 'a'.repeat(64), size: 1, storedSize: 1, crc32: 0, extent: extentId, offset: 0 },
      { hash: 'b'.repeat(64), size: 1, storedSize: 1, crc32: 0, extent: extentId, offset: 1 },
      { hash: 'c'.repeat(64), size: 1, storedSize: 1, crc32: 0 },
    ];
    expect(blobKeysOf(hash, blocks)).toEqual([mapKey(hash), blockKey('a'.repeat(64)), blockKey('b'.repeat(64)), blockKey('c'.repeat(64)), extentKey(extentId)]);
  });
});
