// An upload's commit on PostgreSQL in one round trip: a call of s3dedup_commit_put (migration
// 0005), which does in the server what MetadataStore.commitPut does statement by statement
// through Kysely. A named prepared statement on the pg pool, run outside any transaction: the
// call is its own transaction, and a failed check (SQLSTATE S3D01) rolls all of it back.
import type pg from 'pg';
import { blobKeysOf } from '../store/keys.js';
import { retryable } from './file-for-read.js';
import type { BlockRef, CommitGuard, ContentRecord, PutOutcome } from './metadata-store.js';

const COMMIT_PUT = `select r_applied, r_version from s3dedup_commit_put(${Array.from({ length: 19 }, (_, i) => `$${i + 1}`).join(', ')})`;

/** The SQLSTATE the function raises when the commit cannot be proven safe (a retryable 503). */
const NOT_PROVEN = 'S3D01';

export class PgCommit {
  constructor(
    private readonly pool: pg.Pool,
    /** the advisory lock the cleaner's deletions take exclusively */
    private readonly barrierId: string,
  ) {}

  async commitPut(path: string, version: number, c: ContentRecord, guard: CommitGuard): Promise<PutOutcome> {
    const distinct = new Map<string, BlockRef>();
    for (const b of c.blocks) distinct.set(b.hash, b);
    // Sorted so concurrent commits lock block rows in one order.
    const rows = [...distinct.values()].sort((a, b) => (a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : 0));
    const values = [
      this.barrierId,
      path,
      version,
      Date.now(),
      c.hash,
      c.logicalSize,
      c.storedSize,
      c.crc32,
      c.blocks.length,
      guard.startSeq,
      guard.mapWritten,
      blobKeysOf(c.hash, distinct.values()),
      c.blocks.map((b) => b.hash),
      rows.map((b) => b.hash),
      rows.map((b) => b.size),
      rows.map((b) => b.storedSize),
      rows.map((b) => b.crc32),
      rows.map((b) => b.extent ?? null),
      rows.map((b) => b.offset ?? null),
    ];
    try {
      const { rows: [r] } = await this.pool.query<{ r_applied: boolean; r_version: number }>({ name: 's3dedup_commit_put', text: COMMIT_PUT, values });
      return { applied: r.r_applied, version: Number(r.r_version) };
    } catch (err) {
      if ((err as { code?: string }).code === NOT_PROVEN) throw retryable((err as Error).message);
      throw err;
    }
  }
}
