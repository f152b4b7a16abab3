// Blob-store key scheme (see the layout comment in store/file-store.ts).
import type { BlockRef } from '../meta/metadata-store.js';

export const blockKey = (sha256: string): string => `blocks/${sha256}`;
export const mapKey = (sha256: string): string => `maps/${sha256}`;
export const DESCRIPTOR_KEY = 's3dedup.json';
export const BLOCK_PREFIX = 'blocks/';
export const MAP_PREFIX = 'maps/';
export const extentKey = (id: string): string => `extents/${id}`;
export const EXTENT_PREFIX = 'extents/';

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
