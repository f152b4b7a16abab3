// The namespace and reference counts, kept in one SQL database through Kysely.
//
// Counting rules (the cleaner and fsck rely on them):
// - contents.ref_count = number of files rows whose content_hash names the content;
// - blocks.ref_count   = number of contents rows whose block list names the block (once per
//   content, however often the block repeats inside it);
// - a content or block row exists only after its blob (map or block) was written;
// - a count that reaches zero deletes nothing here: the row stays for the cleaner, which
//   removes the blob and the row together (a re-upload of the same content finds it and
//   revives it for free).
// Every change of the namespace and its counts happens in one transaction.
//
// The queries below are Kysely's; the per-request ones also have faster forms that give the same
// answers: on SQLite prepared statements run synchronously, with a cache of the GET and HEAD
// lookups (sqlite-hot-path.ts), on PostgreSQL named prepared statements for the reads
// (pg-reads.ts).
import { sql, type Kysely, type Transaction } from 'kysely';
import { blobKeysOf } from '../store/keys.js';
import { isPostgres } from './dialect.js';
import { distinctBlocks } from './distinct-blocks.js';
import { DEFAULT_FILE_CACHE_SIZE, fileForRead, fileRow, n, retryable } from './file-for-read.js';
import type { Database } from './schema.js';
import { rawSqlite, sqliteFilesReleased } from './sqlite.js';
import { PgCommit } from './pg-commit.js';
import { PgReads, pgPool } from './pg-reads.js';
import { SqliteHotPath } from './sqlite-hot-path.js';

export interface BlockRef {
  hash: string;
  /** uncompressed bytes */
  size: number;
  /** bytes of the stored deflate segment */
  storedSize: number;
  /** CRC-32 of the uncompressed block */
  crc32: number;
  /**
   * The extent holding the segment, and the segment's offset in it (store/extent.ts); absent
   * or null: the segment is the object `blocks/<hash>`. An upload leaves them out for the
   * blocks it found stored already (the commit keeps the stored row's place).
   */
  extent?: string | null;
  offset?: number | null;
}

export interface ContentRecord {
  hash: string;
  logicalSize: number;
  storedSize: number;
  crc32: number;
  blocks: BlockRef[];
}

export interface FileRecord {
  path: string;
  /** Unix seconds */
  version: number;
  contentHash: string;
  logicalSize: number;
}

export interface FileWithContent extends FileRecord {
  storedSize: number;
  crc32: number;
  blockCount: number;
}

export type PutOutcome = { applied: boolean; version: number };

/** What an upload proves at commit time that nothing it relies on was collected meanwhile. */
export interface CommitGuard {
  /** gcWatermark() read before the upload looked for existing blocks and contents */
  startSeq: number;
  /**
   * whether this upload found no content row, so it wrote the content map itself (or, for a
   * content of one block, needed none); false when it found the content present
   */
  mapWritten: boolean;
}
/** An upload's GC watermark and whether its content was stored already, read together. */
export interface UploadCheck {
  startSeq: number;
  contentExists: boolean;
}
export type DeleteOutcome = 'deleted' | 'ignored' | 'absent';

/** Rows per multi-row INSERT: well under SQLite's and PostgreSQL's bound-parameter limits. */
const INSERT_BATCH = 500;
/** Rows per page when listing. */
const LIST_PAGE = 1000;

/** Advisory-lock id of the commit/cleaner barrier (any fixed int8; this is 's3dedupg' in ASCII). */
const GC_BARRIER_ID = '8301088924813848679';

export class MetadataStore {
  /** PostgreSQL (true) or SQLite (false): decides only the barrier's form. */
  readonly isPostgres: boolean;
  /** Prepared statements for the per-request queries when `db` is a SQLite file openSqlite opened. */
  private readonly hot: SqliteHotPath | undefined;
  /** Named prepared statements for the per-request reads when `db` is a pool openPostgres opened. */
  private readonly pgReads: PgReads | undefined;
  /** The upload's and the delete's commits as one function call each, on the same pool. */
  private readonly pgCommit: PgCommit | undefined;

  /**
   * @param options.fileCacheSize SQLite only: file lookups kept in memory for repeated GETs,
   *   counted as 1 + the file's blocks each (DEFAULT_FILE_CACHE_SIZE; 0 disables)
   */
  constructor(
    readonly db: Kysely<Database>,
    options: { fileCacheSize?: number } = {},
  ) {
    this.isPostgres = isPostgres(db);
    const raw = rawSqlite(db);
    this.hot = raw && new SqliteHotPath(raw, db, options.fileCacheSize ?? DEFAULT_FILE_CACHE_SIZE);
    const pool = pgPool(db);
    this.pgReads = pool && new PgReads(pool);
    this.pgCommit = pool && new PgCommit(pool, GC_BARRIER_ID);
  }

  async getFile(path: string): Promise<FileWithContent | null> {
    if (this.hot) return this.hot.getFile(path);
    if (this.pgReads) return this.pgReads.getFile(path);
    const row = await this.db
      .selectFrom('files')
      .innerJoin('contents', 'contents.hash', 'files.content_hash')
      .select([
        'files.path',
        'files.version',
        'files.content_hash',
        'files.logical_size',
        'contents.stored_size',
        'contents.crc32',
        'contents.block_count',
      ])
      .where('files.path', '=', path)
      .executeTakeFirst();
    return row ? fileRow(row) : null;
  }

  /** The file and its block list in one query (the GET path); null when absent. */
  async getFileForRead(path: string): Promise<{ file: FileWithContent; blocks: BlockRef[] } | null> {
    if (this.hot) return this.hot.getFileForRead(path);
    if (this.pgReads) return this.pgReads.getFileForRead(path);
    const rows = await this.db
      .selectFrom('files')
      .innerJoin('contents', 'contents.hash', 'files.content_hash')
      .leftJoin('content_blocks', 'content_blocks.content_hash', 'contents.hash')
      .leftJoin('blocks', 'blocks.hash', 'content_blocks.block_hash')
      .select([
        'files.path',
        'files.version',
        'files.content_hash',
        'files.logical_size',
        'contents.stored_size as content_stored_size',
        'contents.crc32 as content_crc32',
        'contents.block_count',
        'blocks.hash as block_hash',
        'blocks.size as block_size',
        'blocks.stored_size as block_stored_size',
        'blocks.crc32 as block_crc32',
        'blocks.extent as block_extent',
        'blocks.extent_offset as block_extent_offset',
      ])
      .where('files.path', '=', path)
      .orderBy('content_blocks.idx')
      .execute();
    return fileForRead(rows);
  }

  /** The block list of a content, in order. */
  async getContentBlocks(contentHash: string): Promise<BlockRef[]> {
    const rows = await this.db
      .selectFrom('content_blocks')
      .innerJoin('blocks', 'blocks.hash', 'content_blocks.block_hash')
      .select(['blocks.hash', 'blocks.size', 'blocks.stored_size', 'blocks.crc32', 'blocks.extent', 'blocks.extent_offset'])
      .where('content_blocks.content_hash', '=', contentHash)
      .orderBy('content_blocks.idx')
      .execute();
    return rows.map((r) => ({
      hash: r.hash,
      size: n(r.size),
      storedSize: n(r.stored_size),
      crc32: n(r.crc32),
      ...(r.extent !== null && { extent: r.extent, offset: n(r.extent_offset) }),
    }));
  }

  /** Stored sizes of those of `hashes` the store already has. */
  async findBlocks(hashes: string[]): Promise<Map<string, number>> {
    const found = new Map<string, number>();
    const single = this.hot ?? this.pgReads;
    if (single && hashes.length === 1) {
      const storedSize = await single.blockStoredSize(hashes[0]);
      if (storedSize !== undefined) found.set(hashes[0], storedSize);
      return found;
    }
    for (let i = 0; i < hashes.length; i += INSERT_BATCH) {
      const rows = await this.db
        .selectFrom('blocks')
        .select(['hash', 'stored_size'])
        .where('hash', 'in', hashes.slice(i, i + INSERT_BATCH))
        .execute();
      for (const r of rows) found.set(r.hash, n(r.stored_size));
    }
    return found;
  }

  async hasContent(hash: string): Promise<boolean> {
    if (this.hot) return this.hot.hasContent(hash);
    if (this.pgReads) return this.pgReads.hasContent(hash);
    const row = await this.db.selectFrom('contents').select('hash').where('hash', '=', hash).executeTakeFirst();
    return row !== undefined;
  }

  /**
   * Points `path` at `content` at `version`, unless a strictly newer version stands. The guard
   * proves that no blob the content needs was collected while the upload ran (docs/gc.md);
   * when that cannot be proven the commit fails with a retryable 503 and changes nothing.
   */
  async commitPut(path: string, version: number, content: ContentRecord, guard: CommitGuard): Promise<PutOutcome> {
    if (this.hot) return this.hot.commitPut(path, version, content, guard);
    if (this.pgCommit) return this.pgCommit.commitPut(path, version, content, guard);
    return this.db.transaction().execute(async (tx) => {
      await this.gcBarrier(tx, 'shared');
      const existing = await tx.selectFrom('files').select(['version', 'content_hash']).where('path', '=', path).executeTakeFirst();
      if (existing && n(existing.version) > version) return { applied: false, version: n(existing.version) };
      const now = Date.now();
      await this.addContentRef(tx, content, guard, now);
      if (existing) {
        await this.dropContentRef(tx, existing.content_hash, now);
        await tx
          .updateTable('files')
          .set({ version, content_hash: content.hash, logical_size: content.logicalSize, updated_at: now })
          .where('path', '=', path)
          .execute();
      } else {
        await tx
          .insertInto('files')
          .values({ path, version, content_hash: content.hash, logical_size: content.logicalSize, updated_at: now })
          .execute();
      }
      return { applied: true, version };
    });
  }

  /**
   * The garbage-collection log position an upload must read before it looks for existing
   * blocks or contents; its commit passes it back in CommitGuard.startSeq.
   */
  async gcWatermark(): Promise<number> {
    if (this.hot) return this.hot.gcWatermark();
    if (this.pgReads) return this.pgReads.gcWatermark();
    const row = await this.db
      .selectFrom('gc_state')
      .select(['pruned_through', sql<number | null>`(select max(seq) from gc_log)`.as('m')])
      .where('id', '=', 1)
      .executeTakeFirst();
    return Math.max(n(row?.m ?? 0), n(row?.pruned_through ?? 0));
  }

  /**
   * gcWatermark() and hasContent(hash) in one read (one snapshot, one query): the watermark of an
   * upload that looked for nothing before its content, which a small body (most Filetracker
   * files) never does.
   */
  async watermarkAndContent(hash: string): Promise<UploadCheck> {
    if (this.hot) return this.hot.watermarkAndContent(hash);
    if (this.pgReads) return this.pgReads.watermarkAndContent(hash);
    const startSeq = await this.gcWatermark(); // first: the order a guard needs
    return { startSeq, contentExists: await this.hasContent(hash) };
  }

  /**
   * Serialises commits against the cleaner's deletion transactions on PostgreSQL (commits
   * share the lock, a cleaner transaction takes it alone); SQLite runs one transaction at a
   * time anyway.
   */
  async gcBarrier(tx: Transaction<Database>, mode: 'shared' | 'exclusive'): Promise<void> {
    if (!this.isPostgres) return;
    if (mode === 'shared') await sql`select pg_advisory_xact_lock_shared(${GC_BARRIER_ID}::bigint)`.execute(tx);
    else await sql`select pg_advisory_xact_lock(${GC_BARRIER_ID}::bigint)`.execute(tx);
  }

  /** Removes `path` unless a strictly newer version stands. */
  async commitDelete(path: string, version: number): Promise<DeleteOutcome> {
    if (this.hot) return this.hot.commitDelete(path, version);
    if (this.pgCommit) return this.pgCommit.commitDelete(path, version);
    return this.db.transaction().execute(async (tx) => {
      const existing = await tx.selectFrom('files').select(['version', 'content_hash']).where('path', '=', path).executeTakeFirst();
      if (!existing) return 'absent';
      if (n(existing.version) > version) return 'ignored';
      await tx.deleteFrom('files').where('path', '=', path).execute();
      await this.dropContentRef(tx, existing.content_hash, Date.now());
      return 'deleted';
    });
  }

  /**
   * Paths under `prefix` (which is '' or ends with '/') with version <= maxVersion, in byte
   * order, paged so a huge namespace never sits in memory.
   */
  async *listFiles(prefix: string, maxVersion: number): AsyncGenerator<FileRecord> {
    let after: string | null = null;
    for (;;) {
      let q = this.db
        .selectFrom('files')
        .select(['path', 'version', 'content_hash', 'logical_size'])
        .where('version', '<=', maxVersion)
        .orderBy('path')
        .limit(LIST_PAGE);
      if (prefix !== '') q = q.where('path', '>=', prefix).where('path', '<', prefixEnd(prefix));
      if (after !== null) q = q.where('path', '>', after);
      const rows = await q.execute();
      for (const r of rows) {
        yield { path: r.path, version: n(r.version), contentHash: r.content_hash, logicalSize: n(r.logical_size) };
      }
      if (rows.length < LIST_PAGE) return;
      after = rows[rows.length - 1].path;
    }
  }

  async close(): Promise<void> {
    await this.db.destroy();
    await sqliteFilesReleased(this.db);
  }

  private async addContentRef(tx: Transaction<Database>, c: ContentRecord, guard: CommitGuard, now: number): Promise<void> {
    const inserted = await tx
      .insertInto('contents')
      .values({
        hash: c.hash,
        logical_size: c.logicalSize,
        stored_size: c.storedSize,
        crc32: c.crc32,
        block_count: c.blocks.length,
        ref_count: 1,
        updated_at: now,
      })
      .onConflict((oc) => oc.column('hash').doNothing())
      .returning('hash')
      .executeTakeFirst();
    if (!inserted) {
      const r = await tx
        .updateTable('contents')
        .set({ ref_count: sql`ref_count + 1`, updated_at: now })
        .where('hash', '=', c.hash)
        .executeTakeFirst();
      // Collected between the insert attempt and this update (PostgreSQL, read committed).
      if (Number(r.numUpdatedRows) !== 1) throw retryable('the content was collected during the commit');
      return;
    }
    if (!guard.mapWritten) throw retryable('the content map was collected during the upload');
    const distinct = distinctBlocks(c.blocks);
    await this.assertNotCollected(tx, blobKeysOf(c.hash, distinct), guard.startSeq);

    const links = c.blocks.map((b, idx) => ({ content_hash: c.hash, idx, block_hash: b.hash }));
    for (let i = 0; i < links.length; i += INSERT_BATCH) {
      await tx.insertInto('content_blocks').values(links.slice(i, i + INSERT_BATCH)).execute();
    }
    // One reference per distinct block.
    const rows = distinct.map((b) => ({
      hash: b.hash,
      size: b.size,
      stored_size: b.storedSize,
      crc32: b.crc32,
      ref_count: 1,
      updated_at: now,
      extent: b.extent ?? null,
      extent_offset: b.offset ?? null,
    }));
    for (let i = 0; i < rows.length; i += INSERT_BATCH) {
      await tx
        .insertInto('blocks')
        .values(rows.slice(i, i + INSERT_BATCH))
        .onConflict((oc) =>
          oc.column('hash').doUpdateSet({ ref_count: sql`blocks.ref_count + 1`, updated_at: now }),
        )
        .execute();
    }
  }

  /**
   * Fails when the cleaner deleted, or may still be deleting, any of `keys` since the upload
   * read its watermark `startSeq` (docs/gc.md has the proof).
   */
  private async assertNotCollected(tx: Transaction<Database>, keys: string[], startSeq: number): Promise<void> {
    const state = await tx.selectFrom('gc_state').select('pruned_through').where('id', '=', 1).executeTakeFirst();
    if (n(state?.pruned_through ?? 0) > startSeq) throw retryable('the upload outlived the garbage-collection log retention');
    for (let i = 0; i < keys.length; i += INSERT_BATCH) {
      const hit = await tx
        .selectFrom('gc_log')
        .select('key')
        .where('key', 'in', keys.slice(i, i + INSERT_BATCH))
        .where((eb) => eb.or([eb('seq', '>', startSeq), eb('pending', '=', 1)]))
        .limit(1)
        .executeTakeFirst();
      if (hit) throw retryable(`${hit.key} was garbage-collected during the upload`);
    }
  }

  private async dropContentRef(tx: Transaction<Database>, hash: string, now: number): Promise<void> {
    await tx
      .updateTable('contents')
      .set({ ref_count: sql`ref_count - 1`, updated_at: now })
      .where('hash', '=', hash)
      .execute();
  }
}

/** The smallest string greater than every string starting with `prefix` ('/' + 1 = '0'). */
function prefixEnd(prefix: string): string {
  const last = prefix.charCodeAt(prefix.length - 1);
  return prefix.slice(0, -1) + String.fromCharCode(last + 1);
}
