// Recomputes every reference count from scratch and checks that every blob the store needs exists:
// the invariants the cleaner and the upload path must keep.
import type { Runtime } from '../../src/runtime.js';
import { blockKey, extentKey, mapKey } from '../../src/store/keys.js';

export interface Inconsistencies {
  contentCounts: string[];
  blockCounts: string[];
  missingBlobs: string[];
}

export async function checkConsistency(rt: Runtime): Promise<Inconsistencies> {
  const db = rt.meta.db;
  const files = await db.selectFrom('files').select('content_hash').execute();
  const contents = await db.selectFrom('contents').select(['hash', 'ref_count', 'block_count']).execute();
  const links = await db.selectFrom('content_blocks').select(['content_hash', 'block_hash']).execute();
  const blocks = await db.selectFrom('blocks').select(['hash', 'ref_count', 'stored_size', 'extent', 'extent_offset']).execute();

  const contentRefs = new Map<string, number>();
  for (const f of files) contentRefs.set(f.content_hash, (contentRefs.get(f.content_hash) ?? 0) + 1);
  const blockRefs = new Map<string, Set<string>>();
  for (const l of links) {
    if (!blockRefs.has(l.block_hash)) blockRefs.set(l.block_hash, new Set());
    blockRefs.get(l.block_hash)!.add(l.content_hash);
  }
  const out: Inconsistencies = { contentCounts: [], blockCounts: [], missingBlobs: [] };
  const contentSet = new Set(contents.map((c) => c.hash));
  for (const c of contents) {
    const want = contentRefs.get(c.hash) ?? 0;
    if (Number(c.ref_count) !== want) out.contentCounts.push(`${c.hash}: stored ${c.ref_count}, recount ${want}`);
  }
  for (const h of contentRefs.keys()) if (!contentSet.has(h)) out.contentCounts.push(`${h}: named by a file but has no row`);
  const blockSet = new Set(blocks.map((b) => b.hash));
  for (const b of blocks) {
    const want = blockRefs.get(b.hash)?.size ?? 0;
    if (Number(b.ref_count) !== want) out.blockCounts.push(`${b.hash}: stored ${b.ref_count}, recount ${want}`);
  }
  for (const h of blockRefs.keys()) if (!blockSet.has(h)) out.blockCounts.push(`${h}: listed by a content but has no row`);
  // A content of one block has no map; its block is the content (src/store/file-store.ts).
  for (const c of contents) {
    if (Number(c.block_count) !== 1 && !(await rt.blobs.head(mapKey(c.hash)))) out.missingBlobs.push(mapKey(c.hash));
  }
  // A block kept in an extent must lie inside that object (src/store/extent.ts).
  const where = new Map(blocks.map((b) => [b.hash, b]));
  const extentSizes = new Map<string, number | null>();
  for (const h of blockRefs.keys()) {
    const b = where.get(h);
    if (!b?.extent) {
      if (!(await rt.blobs.head(blockKey(h)))) out.missingBlobs.push(blockKey(h));
      continue;
    }
    if (!extentSizes.has(b.extent)) extentSizes.set(b.extent, (await rt.blobs.head(extentKey(b.extent)))?.size ?? null);
    const size = extentSizes.get(b.extent);
    if (size === null || size === undefined || Number(b.extent_offset) + Number(b.stored_size) > size) {
      out.missingBlobs.push(`${blockKey(h)} in ${extentKey(b.extent)}`);
    }
  }
  return out;
}

export const CONSISTENT: Inconsistencies = { contentCounts: [], blockCounts: [], missingBlobs: [] };
