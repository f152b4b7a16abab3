// Blob-store key scheme (see the layout comment in store/file-store.ts).
import type { BlockRef } from '../meta/metadata-store.js';

export const blockKey = (sha256: string): string => `blocks/${sha256}`;
export const mapKey = (sha256: string): string => `maps/${sha256}`;
export const DESCRIPTOR_KEY = 's3dedup.json';
export const BLOCK_PREFIX = 'blocks/';
export const MAP_PREFIX = 'maps/';
export const extentKey = (id: string): string => `extents/${id}`;
export const EXTENT_PREFIX = 'extents/';
/** Hex digits of an extent id (128 random bits). */
export const EXTENT_ID_DIGITS = 32;

/** The prefixes of the keys this store names objects by, with the hex digits of their ids. */
const KEY_SHAPES = [
  { kind: 'block', prefix: BLOCK_PREFIX, digits: 64 },
  { kind: 'map', prefix: MAP_PREFIX, digits: 64 },
  { kind: 'extent', prefix: EXTENT_PREFIX, digits: EXTENT_ID_DIGITS },
] as const;
export type KeyKind = (typeof KEY_SHAPES)[number]['kind'];

const LOWER_HEX = /^[0-9a-f]+$/;

/**
 * What `key` names when it is one of this store's object keys (`blocks/<sha256>`,
 * `maps/<sha256>`, `extents/<id>`, lower-case hex): its kind and id; null for anything else.
 *
 * @example
 * parseKey(blockKey(hash)); // { kind: 'block', id: hash }
 * parseKey('blocks/README'); // null
 */
export function parseKey(key: string): { kind: KeyKind; id: string } | null {
  for (const { kind, prefix, digits } of KEY_SHAPES) {
    if (!key.startsWith(prefix)) continue;
    const id = key.slice(prefix.length);
    return id.length === digits && LOWER_HEX.test(id) ? { kind, id } : null;
  }
  return null;
}

/**
 * The blob keys a new content's commit relies on: its map, its blocks and the extents this
 * upload wrote them to. A block kept in an extent has no object of its own, but the cleaner
 * logs its key when it drops the row, which is what a commit reusing the block must see.
 */
export function blobKeysOf(contentHash: string, blocks: Iterable<BlockRef>): string[] {
  const keys = [mapKey(contentHash)];
  const extents = new Set<string>();
  for (const b of blocks) {
    keys.push(blockKey(b.hash));
    if (b.extent) extents.add(b.extent);
  }
  for (const e of extents) keys.push(extentKey(e));
  return keys;
}
