// Metadata records for tests of the metadata store: a content named by a word, made of blocks.
import { createHash } from 'node:crypto';
import type { BlockRef, ContentRecord } from '../../src/meta/metadata-store.js';

/** SHA-256 (hex) of a word: a stand-in hash for a content or a block. */
export const hex = (s: string) => createHash('sha256').update(s).digest('hex');

/** The content `name` made of `blocks`, its sizes their sums. */
export function contentRecord(name: string, blocks: BlockRef[], crc32 = 7): ContentRecord {
  return {
    hash: hex(name),
    logicalSize: blocks.reduce((s, b) => s + b.size, 0),
    storedSize: blocks.reduce((s, b) => s + b.storedSize, 0),
    crc32,
    blocks,
  };
}
