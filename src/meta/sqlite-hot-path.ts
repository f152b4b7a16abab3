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
//
// File lookups of GET and HEAD are kept in memory (an LRU of FILE_CACHE_SIZE, 1 + blocks per
// file) for as long as the database provably has not changed under them. The lookups that
// arrive in one turn of the event loop are answered together in its check phase, after one read
// of `data_version` (it moves when another connection, another process's included, commits) and
// `total_changes()` (rows this connection changed): either moving clears the cache, except for
// this path's own PUT and DELETE commits, which drop just their paths. That read comes after
// every request of the batch arrived, so a commit acknowledged before a request was sent is
// always seen. Reading it once per batch instead of per lookup matters: it is a read
// transaction with its file locks, 7 us in the server against the 15 us of the lookup it
// saves, of a 40 us GET (bench/README.md).
import type BetterSqlite3 from 'better-sqlite3';
import type { Kysely } from 'kysely';
import { blobKeysOf } from '../store/keys.js';
import type { BlockRef, CommitGuard, ContentRecord, DeleteOutcome, FileWithContent, PutOutcome, UploadCheck } from './metadata-store.js';
import { distinctBlocks } from './distinct-blocks.js';
import { fileForRead, fileForReadSql, fileRow, fileSql, retryable, type FileForReadRow, type FileRow } from './file-for-read.js';
import type { Database } from './schema.js';
import { isSqliteBusy, retryWhileBusy } from '../util/sqlite-busy.js';
import { BUSY_TIMEOUT_MS } from './sqlite.js';
import { Lru } from '../util/lru.js';
import { recordFileCacheLookups } from '../metrics/metrics.js';

type FileForRead = { file: FileWithContent; blocks: BlockRef[] };

/** The GC watermark as a scalar subquery (null without a gc_state row; see gcWatermark()). */
const WATERMARK = `(select max(pruned_through, coalesce((select max(seq) from gc_log), 0)) from gc_state where id = 1)`;

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
  /** File lookups of the database state `cachedAt` names (see the header). */
  private readonly files: Lru<string, FileForRead>;
  private cachedAt = { changes: -1, version: -1 };
  private pendingReads: Array<{
    path: string;
    fileOnly: boolean;
    resolve(found: FileForRead | FileWithContent | null): void;
    reject(err: unknown): void;
  }> = [];

  /** @param fileCacheSize capacity of the lookup cache, in files plus their blocks; 0 disables it */
  constructor(
    private readonly raw: BetterSqlite3.Database,
    private readonly kysely: Kysely<Database>,
    fileCacheSize: number,
  ) {
    this.files = new Lru(fileCacheSize);
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
      fileForRead: p(fileForReadSql('?')),
      file: p(fileSql('?')),
      changeStamp: p(`select total_changes(), data_version from pragma_data_version`).raw(),
      totalChanges: p(`select total_changes()`).pluck(),
      watermark: p(`select ${WATERMARK} as w`),
      watermarkAndContent: p(`select ${WATERMARK} as w, exists(select 1 from contents where hash = ?) as has`),
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

  /**
   * The file and its block list; with the cache on, answered in the next check phase of the
   * event loop together with the other lookups of this turn (see the header). The result is
   * shared with later callers (frozen): do not change it.
   */
  getFileForRead(path: string): FileForRead | null | Promise<FileForRead | null> {
    if (this.files.capacity === 0) return this.run(() => this.lookUp(path));
    return this.queueRead(path, false) as Promise<FileForRead | null>;
  }

  /** The file without its block list (HEAD): from the lookup cache when it has the file. */
  getFile(path: string): FileWithContent | null | Promise<FileWithContent | null> {
    if (this.files.capacity === 0) return this.run(() => this.lookUpFile(path));
    return this.queueRead(path, true) as Promise<FileWithContent | null>;
  }

  private queueRead(path: string, fileOnly: boolean): Promise<FileForRead | FileWithContent | null> {
    return new Promise((resolve, reject) => {
      if (this.pendingReads.push({ path, fileOnly, resolve, reject }) === 1) setImmediate(() => void this.flushReads());
    });
  }

  private async flushReads(): Promise<void> {
    const batch = this.pendingReads;
    this.pendingReads = [];
    let results: Array<FileForRead | FileWithContent | null>;
    try {
      results = await this.run(() => {
        // One stamp for the batch, read after all of its requests arrived and before any of its
        // lookups: a commit after it moves the stamp past what these lookups cache.
        const [changes, version] = this.s.changeStamp.get() as [number, number];
        if (changes !== this.cachedAt.changes || version !== this.cachedAt.version) {
          this.files.clear();
          this.cachedAt = { changes, version };
        }
        let hits = 0;
        const found = batch.map(({ path, fileOnly }) => {
          const hit = this.files.get(path);
          if (hit) hits++;
          if (fileOnly) return hit ? hit.file : this.lookUpFile(path);
          return hit ?? this.lookUpToCache(path);
        });
        recordFileCacheLookups(hits, batch.length - hits);
        return found;
      });
    } catch (err) {
      for (const r of batch) r.reject(err);
      return;
    }
    batch.forEach((r, i) => r.resolve(results[i]));
  }

  private lookUpFile(path: string): FileWithContent | null {
    const r = this.s.file.get(path) as FileRow | undefined;
    return r ? fileRow(r) : null;
  }

  private lookUp(path: string): FileForRead | null {
    return fileForRead(this.s.fileForRead.all(path) as FileForReadRow[]);
  }

  private lookUpToCache(path: string): FileForRead | null {
    const found = this.lookUp(path);
    if (found) {
      for (const b of found.blocks) Object.freeze(b);
      Object.freeze(found.blocks);
      Object.freeze(found.file);
      this.files.set(path, Object.freeze(found), 1 + found.blocks.length);
    }
    return found;
  }

  /**
   * Runs this connection's own commit of `paths` and drops just those paths from the lookup
   * cache, when nothing else changed the database since the cache's stamp (else the next
   * lookup clears it all).
   */
  private ownCommit<T>(paths: readonly string[], tx: () => T): T {
    const before = this.s.totalChanges.get() as number;
    try {
      return tx();
    } finally {
      for (const path of paths) this.files.delete(path);
      if (before === this.cachedAt.changes) this.cachedAt = { ...this.cachedAt, changes: this.s.totalChanges.get() as number };
    }
  }

  gcWatermark(): number | Promise<number> {
    return this.run(() => (this.s.watermark.get() as { w: number | null }).w ?? 0);
  }

  watermarkAndContent(hash: string): UploadCheck | Promise<UploadCheck> {
    return this.run(() => {
      const r = this.s.watermarkAndContent.get(hash) as { w: number | null; has: number };
      return { startSeq: r.w ?? 0, contentExists: r.has === 1 };
    });
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
      outcomes = await this.write(() => this.ownCommit(batch.map((p) => p.path), () => this.commitPutBatchTx(batch)));
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
    return this.write(() => this.ownCommit([path], () => this.commitDeleteTx(path, version)));
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
      const distinct = distinctBlocks(c.blocks);
      this.assertNotCollected(blobKeysOf(c.hash, distinct), guard.startSeq);
      c.blocks.forEach((b, idx) => this.s.insertLink.run(c.hash, idx, b.hash));
      for (const b of distinct) this.s.blockRefUp.run(b.hash, b.size, b.storedSize, b.crc32, now, b.extent ?? null, b.offset ?? null);
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
