// The content map: a content's block list as a JSON blob at `maps/<content sha256>`. It is
// written before any metadata names the content, so the bucket alone can rebuild the
// metadata of every content it holds. A content of one block has none: its only block,
// `blocks/<content sha256>`, is the content itself (file-store.ts).
import type { BlockRef } from '../meta/metadata-store.js';

export const MAP_FORMAT = 's3dedup-map/1';

export interface ContentMap {
  format: typeof MAP_FORMAT;
  /** SHA-256 (hex) of the uncompressed content */
  sha256: string;
  /** uncompressed bytes */
  size: number;
  /** CRC-32 of the uncompressed content */
  crc32: number;
  /** [block sha256, uncompressed bytes, stored bytes, CRC-32], in content order */
  blocks: Array<[string, number, number, number]>;
}

export function encodeContentMap(sha256: string, size: number, crc32: number, blocks: BlockRef[]): Buffer {
  const map: ContentMap = {
    format: MAP_FORMAT,
    sha256,
    size,
    crc32,
    blocks: blocks.map((b) => [b.hash, b.size, b.storedSize, b.crc32]),
  };
  return Buffer.from(JSON.stringify(map));
}

export function decodeContentMap(data: Buffer): ContentMap {
  const map = JSON.parse(data.toString('utf8')) as ContentMap;
  if (map.format !== MAP_FORMAT || !Array.isArray(map.blocks)) throw new Error(`not a content map (${MAP_FORMAT})`);
  return map;
}
