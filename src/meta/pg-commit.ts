// An upload's commit and a delete's on PostgreSQL in one round trip each: calls of
// s3dedup_commit_put and s3dedup_commit_delete (migration 0005), which do in the server what
// MetadataStore.commitPut and commitDelete do statement by statement through Kysely. Named
// prepared statements on the pg pool, run outside any transaction: each call is its own
// transaction, and a failed check (SQLSTATE S3D01) rolls all of it back.
import type pg from 'pg';
import { blobKeysOf } from '../store/keys.js';
import { retryable } from './file-for-read.js';
import { distinctBlocks } from './distinct-blocks.js';
import type { CommitGuard, ContentRecord, DeleteOutcome, PutOutcome } from './metadata-store.js';

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
    const distinct = distinctBlocks(c.blocks);
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
      blobKeysOf(c.hash, distinct),
      c.blocks.map((b) => b.hash),
      distinct.map((b) => b.hash),
      distinct.map((b) => b.size),
      distinct.map((b) => b.storedSize),
      distinct.map((b) => b.crc32),
      distinct.map((b) => b.extent ?? null),
      distinct.map((b) => b.offset ?? null),
    ];
    try {
      const { rows: [r] } = await this.pool.query<{ r_applied: boolean; r_version: number }>({ name: 's3dedup_commit_put', text: COMMIT_PUT, values });
      return { applied: r.r_applied, version: Number(r.r_version) };
    } catch (err) {
      if ((err as { code?: string }).code === NOT_PROVEN) throw retryable((err as Error).message);
      throw err;
    }
  }

  async commitDelete(path: string, version: number): Promise<DeleteOutcome> {
    const { rows } = await this.pool.query<{ outcome: DeleteOutcome }>({
      name: 's3dedup_commit_delete',
      text: 'select s3dedup_commit_delete($1, $2, $3) as outcome',
      values: [path, version, Date.now()],
    });
    return rows[0].outcome;
  }
}
