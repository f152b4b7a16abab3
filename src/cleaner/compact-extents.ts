// Extent compaction, part of the cleaner's full scan: an extent keeps every byte it was written
// with until its last block goes, so one whose live blocks fill at most half of it has them
// copied, in their order, into a new extent, and their rows moved there; the old one is retired
// and deleted a grace period later, as a GET that looked its blocks up before the move may still
// read it (docs/gc.md, "Compacting extents").
import type { Logger } from '../log.js';
import type { BlobStore } from '../blobs/blob-store.js';
import type { GcStore } from '../meta/gc-store.js';
import { ExtentWriter, planRuns } from '../store/extent.js';
import { EXTENT_PREFIX, extentKey, parseKey } from '../store/keys.js';

/** An extent is rewritten once its live blocks take at most this share of its bytes. */
export const COMPACT_LIVE_RATIO = 0.5;
export interface CompactExtentsReport {
  /** extents rewritten */
  rewritten: number;
  /** bytes of the rewritten extents, which go once retired for the grace period */
  bytesRetired: number;
  /** bytes written into their replacements */
  bytesWritten: number;
}

/**
 * Rewrites the mostly dead extents among those older than `cutoffMs` (younger ones may be an
 * upload's in flight). Memory: one extent's live segments at a time.
 */
export async function compactExtents(
  gc: GcStore,
  blobs: BlobStore,
  o: {
    cutoffMs: number;
    batchSize: number;
    log: Logger;
    /** the cleaner's: deletes announced keys, then acknowledges them */
    deleteAnnounced: (keys: string[]) => Promise<void>;
  },
): Promise<CompactExtentsReport> {
  const report: CompactExtentsReport = { rewritten: 0, bytesRetired: 0, bytesWritten: 0 };
  let batch: Array<{ id: string; size: number }> = [];
  const flush = async () => {
    const live = await gc.extentsLiveBytes(batch.map((e) => e.id));
    for (const { id, size } of batch) {
      const l = live.get(id);
      // None: an orphan or an extent already retired, both the sweep's business.
      if (l === undefined || l > size * COMPACT_LIVE_RATIO) continue;
      const written = await rewrite(gc, blobs, id, o.deleteAnnounced);
      if (written === null) continue;
      report.rewritten++;
      report.bytesRetired += size;
      report.bytesWritten += written;
    }
    batch = [];
  };
  for await (const info of blobs.list(EXTENT_PREFIX)) {
    const parsed = parseKey(info.key);
    if (parsed?.kind !== 'extent' || info.lastModified.getTime() > o.cutoffMs) continue;
    batch.push({ id: parsed.id, size: info.size });
    if (batch.length >= o.batchSize) await flush();
  }
  if (batch.length > 0) await flush();
  if (report.rewritten > 0) o.log.info(report, 'compacted extents');
  return report;
}

/** Copies the live blocks of extent `id` into a new one and moves their rows; its bytes, or null when nothing moved. */
async function rewrite(gc: GcStore, blobs: BlobStore, id: string, deleteAnnounced: (keys: string[]) => Promise<void>): Promise<number | null> {
  const blocks = await gc.extentBlocks(id);
  if (blocks.length === 0) return null;
  const writer = new ExtentWriter(blobs, Number.MAX_SAFE_INTEGER); // one extent: at most the live part of this one
  const places: Array<{ hash: string; offset: number }> = [];
  let newId: string | null = null;
  // Live segments that lie back to back in the old extent are read with one ranged request.
  for (const run of planRuns(blocks.map((b) => ({ ...b, extent: id })))) {
    const data = await blobs.getRange(extentKey(id), run.offset, run.bytes);
    let at = 0;
    for (const b of run.blocks) {
      const place = await writer.append(b.hash, data.subarray(at, (at += b.storedSize)));
      newId ??= place.extent;
      places.push({ hash: b.hash, offset: place.offset });
    }
  }
  await writer.finish();
  const moved = await gc.moveExtentBlocks(id, newId!, places);
  if (moved === 0) {
    // Its blocks were collected meanwhile: the copy is not needed either.
    await gc.announceUnneeded([extentKey(newId!)]);
    await deleteAnnounced([extentKey(newId!)]);
    return null;
  }
  return blocks.reduce((s, b) => s + b.storedSize, 0);
}
