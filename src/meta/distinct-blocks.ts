// The blocks a content's commit takes a reference on: each distinct block once, in hash order,
// so that concurrent commits lock block rows in one order. Every commit path (Kysely, the SQLite
// hot path, PostgreSQL's s3dedup_commit_put) takes them from here.
import type { BlockRef } from './metadata-store.js';

export function distinctBlocks(blocks: readonly BlockRef[]): BlockRef[] {
  const byHash = new Map<string, BlockRef>();
  for (const b of blocks) byHash.set(b.hash, b);
  return [...byHash.values()].sort((a, b) => (a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : 0));
}
