// The cleaner: deletes blocks and content maps that nothing references, and (full scan) blobs
// the metadata does not know at all (crash leftovers) and rewrites extents that are mostly dead
// (cleaner/compact-extents.ts).
//
// Every deletion is announced in gc_log inside the transaction that decides it, performed,
// then acknowledged; upload commits check the log, so an upload can never commit a reference
// to a blob deleted while it ran (the proof is in docs/gc.md). A grace period keeps young
// garbage (recent overwrites, in-flight uploads' blobs) around; safety does not depend on it.
// Fail closed: any error reading the metadata or listing the bucket ends the run before
// anything more is deleted; announced-but-unfinished deletions are finished by the next run.
import type { BlobStore, CompactReport } from '../blobs/blob-store.js';
import type { Logger } from '../log.js';
import { GcStore } from '../meta/gc-store.js';
import type { MetadataStore } from '../meta/metadata-store.js';
import { BLOCK_PREFIX, EXTENT_PREFIX, MAP_PREFIX } from '../store/keys.js';
import { Semaphore } from '../util/semaphore.js';
import { compactExtents, type CompactExtentsReport } from './compact-extents.js';

export interface CleanerOptions {
  /** seconds garbage must have been unreferenced (or, for orphans, unmodified) before it goes */
  graceSeconds: number;
  /** rows or keys decided per transaction */
  batchSize: number;
  /** blob deletions in flight */
  concurrency: number;
  /** seconds acknowledged gc_log rows are kept (uploads longer than this fail and retry) */
  logRetentionSeconds: number;
}

export const DEFAULT_CLEANER_OPTIONS: CleanerOptions = {
  graceSeconds: 3600,
  batchSize: 1000,
  concurrency: 8,
  logRetentionSeconds: 86_400,
};

export interface CleanerReport {
  /** deletions left unfinished by an earlier run, finished now */
  resumed: number;
  maps: number;
  blocks: number;
  /** extent objects deleted: with their last block, or a grace period after compaction retired them */
  extents: number;
  orphans: number;
  fullScan: boolean;
  /** what the blob store's compaction gave back, for stores that have one */
  compacted?: CompactReport;
  /** full scan: the mostly dead extents rewritten */
  extentsCompacted?: CompactExtentsReport;
  durationMs: number;
}

export class Cleaner {
  private readonly gc: GcStore;
  private running: Promise<CleanerReport> | null = null;

  constructor(
    meta: MetadataStore,
    private readonly blobs: BlobStore,
    private readonly options: CleanerOptions,
    private readonly log: Logger,
  ) {
    this.gc = new GcStore(meta);
  }

  /** One pass; concurrent calls share the pass already running. */
  run(opts: { fullScan?: boolean } = {}): Promise<CleanerReport> {
    this.running ??= this.pass(opts.fullScan ?? false).finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async pass(fullScan: boolean): Promise<CleanerReport> {
    const started = Date.now();
    // Taken afresh per batch: blocks freed by this pass's content deletions age from now.
    const cutoff = () => Date.now() - this.options.graceSeconds * 1000;
    const report: CleanerReport = { resumed: 0, maps: 0, blocks: 0, extents: 0, orphans: 0, fullScan, durationMs: 0 };
    const { batchSize } = this.options;

    for (;;) {
      const keys = await this.gc.pendingKeys(batchSize);
      if (keys.length === 0) break;
      await this.deleteAnnounced(keys);
      report.resumed += keys.length;
    }
    // Contents first: removing them is what brings their blocks' counts to zero.
    for (;;) {
      const keys = await this.gc.takeUnreferencedContents(cutoff(), batchSize);
      if (keys.length === 0) break;
      await this.deleteAnnounced(keys);
      report.maps += keys.length;
    }
    for (;;) {
      const { keys, objects } = await this.gc.takeUnreferencedBlocks(cutoff(), batchSize);
      if (keys.length === 0) break;
      await this.deleteAnnounced(keys, objects);
      report.blocks += keys.filter((k) => k.startsWith(BLOCK_PREFIX)).length;
      report.extents += keys.filter((k) => k.startsWith(EXTENT_PREFIX)).length;
    }
    // Extents a compaction rewrote, once no GET can still be reading them.
    for (;;) {
      const keys = await this.gc.takeRetiredExtents(cutoff(), batchSize);
      if (keys.length === 0) break;
      await this.deleteAnnounced(keys);
      report.extents += keys.length;
    }
    if (fullScan) {
      for (const prefix of [MAP_PREFIX, BLOCK_PREFIX, EXTENT_PREFIX]) report.orphans += await this.sweepOrphans(prefix, cutoff());
      report.extentsCompacted = await compactExtents(this.gc, this.blobs, {
        cutoffMs: cutoff(),
        batchSize,
        log: this.log,
        deleteAnnounced: (keys) => this.deleteAnnounced(keys),
      });
    }
    await this.gc.prune(started - this.options.logRetentionSeconds * 1000);
    // The deletions above only dropped index rows in a packed store; this frees their space.
    if (this.blobs.compact) report.compacted = await this.blobs.compact();
    report.durationMs = Date.now() - started;
    this.log.info(report, 'cleaner pass finished');
    return report;
  }

  private async sweepOrphans(prefix: string, cutoffMs: number): Promise<number> {
    let swept = 0;
    let batch: string[] = [];
    const flush = async () => {
      const orphans = await this.gc.takeOrphans(batch);
      batch = [];
      if (orphans.length === 0) return;
      this.log.info({ count: orphans.length, first: orphans[0] }, 'deleting objects the metadata does not know');
      await this.deleteAnnounced(orphans);
      swept += orphans.length;
    };
    for await (const info of this.blobs.list(prefix)) {
      if (info.lastModified.getTime() > cutoffMs) continue; // young: may belong to an upload in flight
      batch.push(info.key);
      if (batch.length >= this.options.batchSize) await flush();
    }
    if (batch.length > 0) await flush();
    return swept;
  }

  /**
   * Deletes announced blobs (`objects`, when only some of the announced keys are objects), then
   * acknowledges them; any failure leaves them announced.
   */
  private async deleteAnnounced(keys: string[], objects: string[] = keys): Promise<void> {
    const sem = new Semaphore(this.options.concurrency);
    const results = await Promise.allSettled(
      objects.map(async (key) => {
        await sem.acquire();
        try {
          await this.blobs.delete(key);
        } finally {
          sem.release();
        }
      }),
    );
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    await this.gc.acknowledge(keys);
  }
}
