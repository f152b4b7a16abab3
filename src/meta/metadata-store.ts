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
import { sql, type Kysely, type Transaction } from 'kysely';
import { AppError } from '../errors.js';
import type { Database } from './schema.js';

export interface BlockRef {
  hash: string;
  /** uncompressed bytes */
  size: number;
  /** bytes of the stored deflate segment */
  storedSize: number;
  /** CRC-32 of the uncompressed block */
  crc32: number;
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
export type DeleteOutcome = 'deleted' | 'ignored' | 'absent';

/** Rows per multi-row INSERT: well under SQLite's and PostgreSQL's bound-parameter limits. */
const INSERT_BATCH = 500;
/** Rows per page when listing. */
const LIST_PAGE = 1000;

const n = (v: unknown): number => (typeof v === 'number' ? v : Number(v));

export class MetadataStore {
  constructor(readonly db: Kysely<Database>) {}

  async getFile(path: string): Promise<FileWithContent | null> {
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
    if (!row) return null;
    return {
      path: row.path,
      version: n(row.version),
      contentHash: row.content_hash,
      logicalSize: n(row.logical_size),
      storedSize: n(row.stored_size),
      crc32: n(row.crc32),
      blockCount: n(row.block_count),
    };
  }

  /** The block list of a content, in order. */
  async getContentBlocks(contentHash: string): Promise<BlockRef[]> {
    const rows = await this.db
      .selectFrom('content_blocks')
      .innerJoin('blocks', 'blocks.hash', 'content_blocks.block_hash')
      .select(['blocks.hash', 'blocks.size', 'blocks.stored_size', 'blocks.crc32'])
      .where('content_blocks.content_hash', '=', contentHash)
      .orderBy('content_blocks.idx')
      .execute();
    return rows.map((r) => ({ hash: r.hash, size: n(r.size), storedSize: n(r.stored_size), crc32: n(r.crc32) }));
  }

  /** Stored sizes of those of `hashes` the store already has. */
  async findBlocks(hashes: string[]): Promise<Map<string, number>> {
    const found = new Map<string, number>();
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
    const row = await this.db.selectFrom('contents').select('hash').where('hash', '=', hash).executeTakeFirst();
    return row !== undefined;
  }

  /**
   * Points `path` at `content` at `version`, unless a strictly newer version stands.
   * `reusedBlocks` are blocks the upload did not write because the store had them: they must
   * still exist now, or the commit fails (retryable) rather than reference a lost block.
   */
  async commitPut(path: string, version: number, content: ContentRecord, reusedBlocks: string[]): Promise<PutOutcome> {
    return this.db.transaction().execute(async (tx) => {
      const existing = await tx.selectFrom('files').select(['version', 'content_hash']).where('path', '=', path).executeTakeFirst();
      if (existing && n(existing.version) > version) return { applied: false, version: n(existing.version) };
      const now = Date.now();
      await this.addContentRef(tx, content, reusedBlocks, now);
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

  /** Removes `path` unless a strictly newer version stands. */
  async commitDelete(path: string, version: number): Promise<DeleteOutcome> {
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
  }

  private async addContentRef(tx: Transaction<Database>, c: ContentRecord, reusedBlocks: string[], now: number): Promise<void> {
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
      await tx
        .updateTable('contents')
        .set({ ref_count: sql`ref_count + 1`, updated_at: now })
        .where('hash', '=', c.hash)
        .execute();
      return;
    }
    if (reusedBlocks.length > 0) {
      const unique = [...new Set(reusedBlocks)];
      let present = 0;
      for (let i = 0; i < unique.length; i += INSERT_BATCH) {
        const r = await tx
          .selectFrom('blocks')
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .where('hash', 'in', unique.slice(i, i + INSERT_BATCH))
          .executeTakeFirstOrThrow();
        present += n(r.n);
      }
      if (present !== unique.length) {
        throw new AppError('UNAVAILABLE', 'a reused block was collected during the upload; retry the request');
      }
    }
    const links = c.blocks.map((b, idx) => ({ content_hash: c.hash, idx, block_hash: b.hash }));
    for (let i = 0; i < links.length; i += INSERT_BATCH) {
      await tx.insertInto('content_blocks').values(links.slice(i, i + INSERT_BATCH)).execute();
    }
    // One reference per distinct block; sorted so concurrent writers lock rows in one order.
    const distinct = new Map<string, BlockRef>();
    for (const b of c.blocks) distinct.set(b.hash, b);
    const rows = [...distinct.values()]
      .sort((a, b) => (a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : 0))
      .map((b) => ({ hash: b.hash, size: b.size, stored_size: b.storedSize, crc32: b.crc32, ref_count: 1, updated_at: now }));
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
