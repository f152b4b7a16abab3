// The per-request queries of MetadataStore on SQLite, as prepared better-sqlite3 statements run
// synchronously. Kysely compiles every query from an operation tree and resolves it through
// promises; on a 4 KiB PUT or GET that was a third of the server's CPU (bench/results). The SQL
// and the rules are the ones metadata-store.ts documents; the test suite runs both paths (the
// PostgreSQL backends take Kysely's).
//
// Sharing the connection with Kysely: better-sqlite3 runs each statement to completion, so a
// synchronous run can interleave with Kysely only between two statements of a Kysely
// transaction (the cleaner's, a migration's). While one is open the connection says
// inTransaction, and a hot-path call then waits for Kysely's connection (its mutex, held until
// that transaction ends) instead of running inside someone else's transaction.
//
// Group commit: the PUT commits that arrive in one turn of the event loop run in one write
// transaction, each in a savepoint of its own, so one that fails (a 503 from the cleaner's guard)
// is undone alone. A commit writes every B-tree page it touches into the WAL, and concurrent PUTs
// touch many of the same pages (the ref-count indexes, neighbouring paths): on the disk this
// was measured on, 8 commits in one transaction cost 35% less each than 8 transactions.
import type BetterSqlite3 from 'better-sqlite3';
import type { Kysely } from 'kysely';
import { blobKeysOf } from '../store/keys.js';
import type { BlockRef, CommitGuard, ContentRecord, DeleteOutcome, FileWithContent, PutOutcome } from './metadata-store.js';
import { fileForRead, retryable, type FileForReadRow } from './file-for-read.js';
import type { Database } from './schema.js';
import { isSqliteBusy, retryWhileBusy } from '../util/sqlite-busy.js';
import { BUSY_TIMEOUT_MS } from './sqlite.js';

interface PendingPut {
  path: string;
  version: number;
  content: ContentRecord;
  guard: CommitGuard;
  resolve(outcome: PutOutcome): void;
  reject(err: unknown): void;
}

export class SqliteHotPath {
  /** Prepared on first use: the tables exist only once migrations have run. */
  private statements: ReturnType<SqliteHotPath['prepare']> | undefined;
  /** One PUT commit in a savepoint (inside the batch's transaction). */
  private readonly commitPutSavepoint: (path: string, version: number, c: ContentRecord, guard: CommitGuard) => PutOutcome;
  /** Runs a batch of PUT commits in one IMMEDIATE transaction; returns each one's outcome or error. */
  private readonly commitPutBatchTx: (batch: readonly PendingPut[]) => Array<PutOutcome | Error>;
  private pendingPuts: PendingPut[] = [];
  private readonly commitDeleteTx: (path: string, version: number) => DeleteOutcome;

  constructor(
    private readonly raw: BetterSqlite3.Database,
    private readonly kysely: Kysely<Database>,
  ) {
    // IMMEDIATE: take the write lock at BEGIN, so another process on the same file (a CLI
    // `cleanup` beside the server) makes this wait in busy_timeout rather than fail mid-way.
    // Called inside the batch's transaction, better-sqlite3 runs this one as a savepoint.
    this.commitPutSavepoint = raw.transaction((path: string, version: number, c: ContentRecord, guard: CommitGuard) =>
      this.commitPutBody(path, version, c, guard),
    ) as never;
    this.commitPutBatchTx = raw.transaction((batch: readonly PendingPut[]) =>
      batch.map((p) => {
        try {
          return this.commitPutSavepoint(p.path, p.version, p.content, p.guard);
        } catch (err) {
          if (isSqliteBusy(err)) throw err; // the whole batch retries
          return err instanceof Error ? err : new Error(String(err));
        }
      }),
    ).immediate as never;
    this.commitDeleteTx = raw.transaction((path: string, version: number) => this.commitDeleteBody(path, version)).immediate as never;
  }

  private get s() {
    return (this.statements ??= this.prepare());
  }

  private prepare() {
    const p = (sql: string) => this.raw.prepare(sql);
    return {
      fileForRead: p(
        `select f.path, f.version, f.content_hash, f.logical_size,
                c.stored_size as content_stored_size, c.crc32 as content_crc32, c.block_count,
                b.hash as block_hash, b.size as block_size, b.stored_size as block_stored_size, b.crc32 as block_crc32,
                b.extent as block_extent, b.extent_offset as block_extent_offset
           from files f
           join contents c on c.hash = f.content_hash
           left join content_blocks cb on cb.content_hash = c.hash
           left join blocks b on b.hash = cb.block_hash
          where f.path = ?
          order by cb.idx`,
      ),
      watermark: p(`select max(pruned_through, coalesce((select max(seq) from gc_log), 0)) as w from gc_state where id = 1`),
      blockStoredSize: p(`select stored_size from blocks where hash = ?`).pluck(),
      hasContent: p(`select 1 from contents where hash = ?`).pluck(),
      fileVersion: p(`select version, content_hash from files where path = ?`),
      insertContent: p(
        `insert into contents (hash, logical_size, stored_size, crc32, block_count, ref_count, updated_at)
         values (?, ?, ?, ?, ?, 1, ?) on conflict (hash) do nothing`,
      ),
      contentRefUp: p(`update contents set ref_count = ref_count + 1, updated_at = ? where hash = ?`),
      contentRefDown: p(`update contents set ref_count = ref_count - 1, updated_at = ? where hash = ?`),
      prunedThrough: p(`select pruned_through from gc_state where id = 1`).pluck(),
      collected: p(`select 1 from gc_log where key = ? and (seq > ? or pending = 1) limit 1`).pluck(),
      insertLink: p(`insert into content_blocks (content_hash, idx, block_hash) values (?, ?, ?)`),
      blockRefUp: p(
        `insert into blocks (hash, size, stored_size, crc32, ref_count, updated_at, extent, extent_offset) values (?, ?, ?, ?, 1, ?, ?, ?)
         on conflict (hash) do update set ref_count = blocks.ref_count + 1, updated_at = excluded.updated_at`,
      ),
      updateFile: p(`update files set version = ?, content_hash = ?, logical_size = ?, updated_at = ? where path = ?`),
      insertFile: p(`insert into files (path, version, content_hash, logical_size, updated_at) values (?, ?, ?, ?, ?)`),
      deleteFile: p(`delete from files where path = ?`),
    };
  }

  /** Runs `fn` now, or once a Kysely transaction that holds the connection has ended. */
  private run<T>(fn: () => T): T | Promise<T> {
    if (!this.raw.inTransaction) return fn();
    return this.kysely.connection().execute(async () => fn());
  }

  getFileForRead(path: string): { file: FileWithContent; blocks: BlockRef[] } | null | Promise<{ file: FileWithContent; blocks: BlockRef[] } | null> {
    return this.run(() => fileForRead(this.s.fileForRead.all(path) as FileForReadRow[]));
  }

  gcWatermark(): number | Promise<number> {
    return this.run(() => (this.s.watermark.get() as { w: number } | undefined)?.w ?? 0);
  }

  blockStoredSize(hash: string): number | undefined | Promise<number | undefined> {
    return this.run(() => this.s.blockStoredSize.get(hash) as number | undefined);
  }

  hasContent(hash: string): boolean | Promise<boolean> {
    return this.run(() => this.s.hasContent.get(hash) !== undefined);
  }

  /** Commits with the other PUTs of this turn of the event loop (see the header). */
  commitPut(path: string, version: number, content: ContentRecord, guard: CommitGuard): Promise<PutOutcome> {
    return new Promise<PutOutcome>((resolve, reject) => {
      if (this.pendingPuts.push({ path, version, content, guard, resolve, reject }) === 1) setImmediate(() => void this.flushPuts());
    });
  }

  private async flushPuts(): Promise<void> {
    const batch = this.pendingPuts;
    this.pendingPuts = [];
    let outcomes: Array<PutOutcome | Error>;
    try {
      outcomes = await this.write(() => this.commitPutBatchTx(batch));
    } catch (err) {
      for (const p of batch) p.reject(err);
      return;
    }
    batch.forEach((p, i) => {
      const o = outcomes[i];
      if (o instanceof Error) p.reject(o);
      else p.resolve(o);
    });
  }

  commitDelete(path: string, version: number): Promise<DeleteOutcome> {
    return this.write(() => this.commitDeleteTx(path, version));
  }

  /**
   * Runs a write transaction. When another process holds the write lock (WORKERS > 1, a CLI
   * beside the server), SQLite's own busy wait would sleep 1 ms and more with the event loop
   * blocked; instead BEGIN fails at once here and the attempt is repeated asynchronously, so
   * this process serves other requests meanwhile.
   */
  private write<T>(tx: () => T): Promise<T> {
    return retryWhileBusy(() =>
      this.run(() => {
        // Not prepared once: SQLite applies this pragma when it compiles it, not when it runs.
        this.raw.pragma('busy_timeout = 0');
        try {
          return tx();
        } finally {
          this.raw.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
        }
      }),
    );
  }

  private commitPutBody(path: string, version: number, c: ContentRecord, guard: CommitGuard): PutOutcome {
    const existing = this.s.fileVersion.get(path) as { version: number; content_hash: string } | undefined;
    if (existing && existing.version > version) return { applied: false, version: existing.version };
    const now = Date.now();
    const inserted = this.s.insertContent.run(c.hash, c.logicalSize, c.storedSize, c.crc32, c.blocks.length, now).changes === 1;
    if (!inserted) {
      this.s.contentRefUp.run(now, c.hash);
    } else {
      if (!guard.mapWritten) throw retryable('the content map was collected during the upload');
      const distinct = new Map<string, BlockRef>();
      for (const b of c.blocks) distinct.set(b.hash, b);
      this.assertNotCollected(blobKeysOf(c.hash, distinct.values()), guard.startSeq);
      c.blocks.forEach((b, idx) => this.s.insertLink.run(c.hash, idx, b.hash));
      for (const b of distinct.values()) this.s.blockRefUp.run(b.hash, b.size, b.storedSize, b.crc32, now, b.extent ?? null, b.offset ?? null);
    }
    if (existing) {
      this.s.contentRefDown.run(now, existing.content_hash);
      this.s.updateFile.run(version, c.hash, c.logicalSize, now, path);
    } else {
      this.s.insertFile.run(path, version, c.hash, c.logicalSize, now);
    }
    return { applied: true, version };
  }

  private assertNotCollected(keys: string[], startSeq: number): void {
    if (((this.s.prunedThrough.get() as number | undefined) ?? 0) > startSeq) {
      throw retryable('the upload outlived the garbage-collection log retention');
    }
    for (const key of keys) {
      if (this.s.collected.get(key, startSeq) !== undefined) throw retryable(`${key} was garbage-collected during the upload`);
    }
  }

  private commitDeleteBody(path: string, version: number): DeleteOutcome {
    const existing = this.s.fileVersion.get(path) as { version: number; content_hash: string } | undefined;
    if (!existing) return 'absent';
    if (existing.version > version) return 'ignored';
    this.s.deleteFile.run(path);
    this.s.contentRefDown.run(Date.now(), existing.content_hash);
    return 'deleted';
  }
}
