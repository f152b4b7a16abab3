// A BlobStore on a local directory that appends objects to a few large pack files instead of
// creating one file per object.
//
// Why: creating a file costs an inode, a directory entry and a rename; on the disks this was
// measured on that was 0.3-1 ms of kernel CPU per object, about as much as the rest of a small
// PUT's work, and up to half of a large PUT's server CPU at 128 KiB blocks (bench/README.md).
// An append costs a write into the page cache.
//
// Layout under the root:
// - `packs/<id>.pack`  records `S3DP` | u32 key length | u32 data length | key (UTF-8) | data,
//                      appended, never changed in place; the records make a pack readable without
//                      the index (for recovery);
// - `index.sqlite`     objects(key -> pack, offset of the data, size, mtime) and packs(id, bytes
//                      written, live bytes, sealed, owner pid), SQLite in WAL mode, so several
//                      processes (WORKERS > 1, a CLI beside the server) share one store.
// Each process appends to a pack of its own, created at its first write and sealed when it
// reaches `packMaxBytes` or the store closes; packs of processes that died are sealed by the
// next one to open the store.
//
// A put writes the record first, then commits its index row, so a crash in between leaves only
// unreferenced bytes in a pack. Index rows of puts that finish together are committed in one
// transaction (after one fdatasync of the pack with `fsync`). An overwrite or delete only
// updates the index and the pack's live bytes; compact() copies the live objects out of sealed
// packs that are mostly dead and then removes them. A reader that finds a pack gone (compacted
// by another process) looks the key up again.
import { closeSync, fdatasync, mkdirSync, openSync, read, readSync, statSync, writev, writevSync, constants as fsConstants } from 'node:fs';
import { access, unlink } from 'node:fs/promises';
import { promisify } from 'node:util';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import BetterSqlite3 from 'better-sqlite3';
import { BlobExistsError, BlobNotFoundError, BlobStoreError } from '../errors.js';
import type { BlobInfo, BlobStore, CompactReport, PutOptions } from './blob-store.js';
import { retryWhileBusy } from '../util/sqlite-busy.js';
import { checkpointInBackground } from '../util/wal-checkpointer.js';
import { errnoCode, toBlobStoreError } from './fs-errors.js';

export interface PackedBlobStoreOptions {
  /** Directory holding `index.sqlite` and `packs/`; created when opened. */
  root: string;
  /** fdatasync the pack before its index rows commit (durable across power loss, slower). Default false. */
  fsync?: boolean;
  /** A pack is sealed once it holds this many bytes; default 256 MiB. */
  packMaxBytes?: number;
}

/** The index database's file name under the root; its presence marks a packed store. */
export const PACK_INDEX = 'index.sqlite';
const MAGIC = Buffer.from('S3DP');
const HEADER_BYTES = 12;
/** Objects up to this size are written on the event loop, into the page cache: cheaper than a thread-pool trip (64 KiB). */
const INLINE_WRITE_BYTES = 65_536;
/**
 * Objects up to this size are read on the event loop (16 KiB): most Filetracker files, whose
 * blocks are usually in the page cache; larger reads, which may wait on the disk, go to the pool.
 */
const INLINE_READ_BYTES = 16_384;
/** Read handles kept open (one per pack). */
const READERS_OPEN = 64;
/** Rows per list() page. */
const LIST_PAGE = 1000;

interface Location {
  pack: number;
  offset: number;
  size: number;
  mtime: number;
}

interface PendingPut {
  key: string;
  pack: number;
  offset: number;
  size: number;
  mtime: number;
  ifNoneMatch: boolean;
  /** compaction: update the row only while it still points at this place */
  movedFrom?: { pack: number; offset: number };
  resolve(): void;
  reject(err: unknown): void;
}

/** What the puts of one index transaction change in the packs table, applied once per pack at its end. */
interface PackChanges {
  /** pack -> end of its last record */
  grown: Map<number, number>;
  /** pack -> change of its live bytes */
  live: Map<number, number>;
}

/** The pack this process appends to. */
interface Writer {
  id: number;
  fd: number;
  /** next free byte; ranges are reserved synchronously, so concurrent writes never overlap */
  tail: number;
  /** writes still running into this pack */
  inFlight: number;
  sealing: boolean;
}

/**
 * Stores blobs as records in append-only pack files with a SQLite index.
 *
 * @example
 * const store = await PackedBlobStore.open({ root: '/var/lib/s3dedup/blobs' });
 * await store.put('blocks/' + sha256hex, data, { ifNoneMatch: true });
 */
export class PackedBlobStore implements BlobStore {
  readonly describe: string;
  private readonly root: string;
  private readonly packDir: string;
  private readonly fsync: boolean;
  private readonly packMaxBytes: number;
  private readonly db: BetterSqlite3.Database;
  private readonly s: ReturnType<PackedBlobStore['prepare']>;
  private writer: Writer | null = null;
  /** the pack being created, so concurrent first writes share one */
  private creating: Promise<Writer> | null = null;
  private readonly readers = new Map<number, number>();
  /** write handles of this process's packs: the current one and any still being sealed */
  private readonly writeFds = new Map<number, number>();
  private pending: PendingPut[] = [];
  private flushScheduled = false;
  /** Flushes run one after another, so one that waits for fdatasync never overlaps a pack's close. */
  private flushChain: Promise<void> = Promise.resolve();
  private closed = false;
  private compacting: Promise<CompactReport> | null = null;
  private readonly stopCheckpoints: () => Promise<void>;

  private constructor(opts: PackedBlobStoreOptions) {
    this.root = resolve(opts.root);
    this.packDir = join(this.root, 'packs');
    this.fsync = opts.fsync ?? false;
    this.packMaxBytes = opts.packMaxBytes ?? 268_435_456;
    this.describe = `${pathToFileURL(this.root).href} (packs)`;
    mkdirSync(this.packDir, { recursive: true });
    const indexPath = join(this.root, PACK_INDEX);
    const synchronous = this.fsync ? 'FULL' : 'NORMAL';
    this.db = new BetterSqlite3(indexPath);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma(`synchronous = ${synchronous}`);
    this.stopCheckpoints = checkpointInBackground(this.db, indexPath, synchronous);
    // Writers retry asynchronously instead (write()); readers never wait in WAL mode.
    this.db.pragma('busy_timeout = 0');
    this.db.exec(`
      create table if not exists objects (
        key text primary key, pack integer not null, offset integer not null, size integer not null, mtime integer not null
      ) without rowid;
      -- By pack and offset, not by pack alone: the rows of one pack then enter this index in the
      -- order they are appended, at its right edge, so the puts of a batch share its last leaf
      -- instead of each dirtying a leaf of its own (the keys are hashes). Stores made before
      -- have objects_pack (pack), replaced here once.
      create index if not exists objects_pack_offset on objects (pack, offset);
      drop index if exists objects_pack;
      -- autoincrement: a removed pack's id is never given again, so a read handle another
      -- process still holds on a removed pack can never be taken for a new one.
      create table if not exists packs (
        id integer primary key autoincrement, bytes integer not null, live integer not null, sealed integer not null, owner integer not null
      );`);
    this.s = this.prepare();
  }

  /** Opens (creating if needed) the store at `root` and seals the packs of processes that died. */
  static async open(opts: PackedBlobStoreOptions): Promise<PackedBlobStore> {
    const store = new PackedBlobStore(opts);
    try {
      await store.write(() => {
        for (const { id, owner } of store.s.openPacks.all() as Array<{ id: number; owner: number }>) {
          if (owner !== process.pid && !processAlive(owner)) store.s.seal.run(id);
        }
      });
    } catch (err) {
      void store.stopCheckpoints();
      store.db.close();
      throw store.translate(err, 'open');
    }
    return store;
  }

  private prepare() {
    const p = (sql: string) => this.db.prepare(sql);
    return {
      locate: p(`select pack, offset, size, mtime from objects where key = ?`),
      insertNew: p(`insert into objects (key, pack, offset, size, mtime) values (?, ?, ?, ?, ?) on conflict (key) do nothing`),
      replace: p(`update objects set pack = ?, offset = ?, size = ?, mtime = ? where key = ?`),
      move: p(`update objects set pack = ?, offset = ? where key = ? and pack = ? and offset = ?`),
      remove: p(`delete from objects where key = ?`),
      addLive: p(`update packs set live = live + ? where id = ?`),
      grow: p(`update packs set bytes = max(bytes, ?) where id = ?`),
      newPack: p(`insert into packs (bytes, live, sealed, owner) values (0, 0, 0, ?) returning id`).pluck(),
      seal: p(`update packs set sealed = 1 where id = ?`),
      openPacks: p(`select id, owner from packs where sealed = 0`),
      candidates: p(`select id, bytes, live from packs where sealed = 1 and live * 2 <= bytes order by id`),
      inPack: p(`select key, offset, size, mtime from objects where pack = ? order by offset limit ?`),
      dropPack: p(`delete from packs where id = ? and not exists (select 1 from objects where pack = ?)`),
      listFrom: p(`select key, size, mtime from objects where key >= ? order by key limit ${LIST_PAGE}`),
      listAfter: p(`select key, size, mtime from objects where key > ? order by key limit ${LIST_PAGE}`),
      stats: p(`select count(*) as packs, coalesce(sum(bytes), 0) as bytes, coalesce(sum(live), 0) as live from packs`),
    };
  }

  async put(key: string, data: Buffer, options: PutOptions = {}): Promise<void> {
    checkKey(key);
    const signal = options.signal;
    signal?.throwIfAborted();
    // A create-only put is decided at its commit (applyPut); looking the key up first as well
    // was 3.6% of a small PUT in its profile, to save a few dead bytes in the rare case that it
    // exists (the A/B that followed was within noise: 62.5k/66.5k -> 66.1k/65.8k requests).
    const { pack, offset } = await this.append(key, data);
    // The last point at which a cancelled upload leaves nothing but dead bytes.
    signal?.throwIfAborted();
    await this.commit({ key, pack, offset, size: data.length, mtime: Date.now(), ifNoneMatch: options.ifNoneMatch ?? false });
  }

  async get(key: string, signal?: AbortSignal): Promise<Buffer> {
    return this.readObject(key, (loc) => loc, signal);
  }

  async getRange(key: string, offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    return this.readObject(
      key,
      (loc) => {
        if (offset + length > loc.size) {
          throw new BlobStoreError(`${this.describe}: ${key} ends inside bytes ${offset}+${length} (it has ${loc.size})`);
        }
        return { ...loc, offset: loc.offset + offset, size: length };
      },
      signal,
    );
  }

  /** Reads the part `part` picks of the object at `key`, looking it up again if its pack went meanwhile. */
  private async readObject(key: string, part: (loc: Location) => Location, signal?: AbortSignal): Promise<Buffer> {
    checkKey(key);
    signal?.throwIfAborted();
    for (let attempt = 0; ; attempt++) {
      const loc = this.locate(key, 'get');
      if (!loc) throw new BlobNotFoundError(key);
      const wanted = part(loc);
      try {
        return await this.read(wanted);
      } catch (err) {
        // Compacted away by another process between the lookup and the open: look again.
        if (errnoCode(err) === 'ENOENT' && attempt < 3) continue;
        throw this.translate(err, `get ${key}`, signal);
      }
    }
  }

  async head(key: string, signal?: AbortSignal): Promise<BlobInfo | null> {
    checkKey(key);
    signal?.throwIfAborted();
    const loc = this.locate(key, 'head');
    return loc ? { key, size: loc.size, lastModified: new Date(loc.mtime) } : null;
  }

  /** The index row of `key`; a failing index is a BlobStoreError, never "not found". */
  private locate(key: string, what: string): Location | undefined {
    try {
      return this.s.locate.get(key) as Location | undefined;
    } catch (err) {
      throw this.translate(err, `${what} ${key}`);
    }
  }

  async delete(key: string): Promise<void> {
    checkKey(key);
    try {
      await this.write(() => {
        const loc = this.s.locate.get(key) as Location | undefined;
        if (!loc) return;
        this.s.remove.run(key);
        this.s.addLive.run(-loc.size, loc.pack);
      });
    } catch (err) {
      throw this.translate(err, `delete ${key}`);
    }
  }

  async *list(prefix: string): AsyncIterable<BlobInfo> {
    if (prefix.startsWith('/')) throw new Error(`invalid blob key prefix: ${JSON.stringify(prefix)}`);
    type Row = { key: string; size: number; mtime: number };
    const page = (after: string | null): Row[] => {
      try {
        return (after === null ? this.s.listFrom.all(prefix) : this.s.listAfter.all(after)) as Row[];
      } catch (err) {
        throw this.translate(err, `list ${prefix}`);
      }
    };
    for (let rows = page(null); rows.length > 0; rows = page(rows[rows.length - 1].key)) {
      for (const r of rows) {
        if (!r.key.startsWith(prefix)) return;
        yield { key: r.key, size: r.size, lastModified: new Date(r.mtime) };
      }
      if (rows.length < LIST_PAGE) return;
    }
  }

  async ping(signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    try {
      if (!statSync(this.packDir).isDirectory()) throw new BlobStoreError(`${this.packDir} is not a directory`);
      await access(this.packDir, fsConstants.W_OK);
      this.s.stats.get();
    } catch (err) {
      throw this.translate(err, 'ping', signal);
    }
  }

  /**
   * Reclaims the space of overwritten and deleted objects: every sealed pack whose live bytes
   * are at most half of it has its live objects copied to this process's pack and is removed.
   * Concurrent calls share one run; safe beside readers and writers in any process.
   */
  compact(): Promise<CompactReport> {
    this.compacting ??= this.compactPass().finally(() => (this.compacting = null));
    return this.compacting;
  }

  /** Packs, bytes in them, and live bytes (for tests and metrics). */
  stats(): { packs: number; bytes: number; live: number } {
    return this.s.stats.get() as { packs: number; bytes: number; live: number };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.compacting?.catch(() => undefined);
    const w = this.writer;
    this.writer = null;
    if (w) await this.whenWritten(w);
    await this.flushNow();
    if (w) {
      await this.write(() => this.s.seal.run(w.id)).catch(() => undefined);
      this.writeFds.delete(w.id);
      closeSync(w.fd);
    }
    for (const fd of this.readers.values()) closeSync(fd);
    this.readers.clear();
    await this.stopCheckpoints();
    this.db.close();
  }

  /** Appends one record to this process's pack; resolves with where its data starts. */
  private async append(key: string, data: Buffer): Promise<{ pack: number; offset: number }> {
    if (this.closed) throw new BlobStoreError(`${this.describe} is closed`);
    const keyBytes = Buffer.from(key);
    const header = Buffer.allocUnsafe(HEADER_BYTES);
    MAGIC.copy(header, 0);
    header.writeUInt32LE(keyBytes.length, 4);
    header.writeUInt32LE(data.length, 8);
    const length = HEADER_BYTES + keyBytes.length + data.length;
    let w: Writer;
    try {
      w = await this.writerFor(length);
    } catch (err) {
      throw this.translate(err, `put ${key}`);
    }
    const at = w.tail;
    w.tail += length;
    w.inFlight++;
    try {
      await writeAll(w.fd, [header, keyBytes, data], at, data.length <= INLINE_WRITE_BYTES);
    } catch (err) {
      throw this.translate(err, `put ${key}`);
    } finally {
      w.inFlight--;
    }
    return { pack: w.id, offset: at + HEADER_BYTES + keyBytes.length };
  }

  /** The pack to append `length` bytes to, starting a new one when the current one is full. */
  private async writerFor(length: number): Promise<Writer> {
    const w = this.writer;
    if (w && !w.sealing && (w.tail === 0 || w.tail + length <= this.packMaxBytes)) return w;
    if (w && !w.sealing) {
      w.sealing = true;
      this.writer = null;
      // Seal once every write into it is in the index; until then it still takes no new records.
      void this.whenWritten(w)
        .then(() => this.flushNow())
        .then(() => this.write(() => this.s.seal.run(w.id)))
        .catch(() => undefined)
        .finally(() => {
          this.writeFds.delete(w.id);
          closeSync(w.fd);
        });
    }
    this.creating ??= this.write(() => this.s.newPack.get(process.pid) as number)
      .then((id) => {
        const fd = openSync(this.packPath(id), 'wx');
        this.writeFds.set(id, fd);
        return (this.writer = { id, fd, tail: 0, inFlight: 0, sealing: false });
      })
      .finally(() => (this.creating = null));
    return this.creating;
  }

  private async whenWritten(w: Writer): Promise<void> {
    while (w.inFlight > 0) await new Promise((r) => setTimeout(r, 1));
  }

  /** Queues an index row; rows queued in the same turn of the event loop commit together. */
  private commit(p: Omit<PendingPut, 'resolve' | 'reject'>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ ...p, resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => void this.flushNow());
      }
    });
  }

  /** Commits every queued row; resolves once they and all flushes before them are done. */
  private flushNow(): Promise<void> {
    this.flushChain = this.flushChain.then(() => this.flushBatch());
    return this.flushChain;
  }

  private async flushBatch(): Promise<void> {
    this.flushScheduled = false;
    const batch = this.pending;
    if (batch.length === 0) return;
    this.pending = [];
    const outcomes: Array<Error | null> = [];
    try {
      // Data first, then the rows that point at it. A batch only has packs whose handles are
      // still open: a pack's handle closes after its last rows are flushed.
      if (this.fsync) for (const pack of new Set(batch.map((b) => b.pack))) await fdatasyncAsync(this.writeFds.get(pack)!);
      await this.write(() => {
        outcomes.length = 0;
        const packs: PackChanges = { grown: new Map(), live: new Map() };
        for (const p of batch) outcomes.push(this.applyPut(p, packs));
        for (const [pack, end] of packs.grown) this.s.grow.run(end, pack);
        for (const [pack, delta] of packs.live) if (delta !== 0) this.s.addLive.run(delta, pack);
      });
    } catch (err) {
      const failure = this.translate(err, 'index commit');
      for (const p of batch) p.reject(failure);
      return;
    }
    batch.forEach((p, i) => (outcomes[i] ? p.reject(outcomes[i]) : p.resolve()));
  }

  /** One put's index change, inside the batch transaction; an Error for this put alone, else null. */
  private applyPut(p: PendingPut, packs: PackChanges): Error | null {
    packs.grown.set(p.pack, Math.max(packs.grown.get(p.pack) ?? 0, p.offset + p.size));
    const addLive = (delta: number, pack: number) => packs.live.set(pack, (packs.live.get(pack) ?? 0) + delta);
    if (p.movedFrom) {
      const moved = this.s.move.run(p.pack, p.offset, p.key, p.movedFrom.pack, p.movedFrom.offset).changes === 1;
      if (moved) {
        addLive(p.size, p.pack);
        addLive(-p.size, p.movedFrom.pack);
      }
      return null;
    }
    if (this.s.insertNew.run(p.key, p.pack, p.offset, p.size, p.mtime).changes === 1) {
      addLive(p.size, p.pack);
      return null;
    }
    if (p.ifNoneMatch) return new BlobExistsError(p.key);
    const old = this.s.locate.get(p.key) as Location;
    this.s.replace.run(p.pack, p.offset, p.size, p.mtime, p.key);
    addLive(-old.size, old.pack);
    addLive(p.size, p.pack);
    return null;
  }

  private async read(loc: Location): Promise<Buffer> {
    const fd = this.reader(loc.pack);
    const buf = Buffer.allocUnsafeSlow(loc.size);
    const n = loc.size <= INLINE_READ_BYTES ? readSync(fd, buf, 0, loc.size, loc.offset) : (await readAsync(fd, buf, 0, loc.size, loc.offset)).bytesRead;
    if (n !== loc.size) throw new BlobStoreError(`${this.describe}: pack ${loc.pack} ends inside an object (read ${n} of ${loc.size} bytes)`);
    return buf;
  }

  /** A read handle on pack `id`; throws ENOENT when the pack is gone. */
  private reader(id: number): number {
    let fd = this.readers.get(id);
    if (fd === undefined) {
      if (this.readers.size >= READERS_OPEN) {
        const [oldId, oldFd] = this.readers.entries().next().value as [number, number];
        this.readers.delete(oldId);
        closeSync(oldFd);
      }
      fd = openSync(this.packPath(id), 'r');
      this.readers.set(id, fd);
    }
    return fd;
  }

  private packPath(id: number): string {
    return join(this.packDir, `${id.toString().padStart(8, '0')}.pack`);
  }

  private async compactPass(): Promise<CompactReport> {
    const report: CompactReport = { packsRemoved: 0, objectsMoved: 0, bytesFreed: 0 };
    for (const c of this.s.candidates.all() as Array<{ id: number; bytes: number; live: number }>) {
      if (this.closed) break;
      for (;;) {
        const rows = this.s.inPack.all(c.id, 256) as Array<{ key: string; offset: number; size: number; mtime: number }>;
        if (rows.length === 0) break;
        // Copies one at a time (one object's bytes in memory); their rows commit together.
        const moves: Array<Promise<void>> = [];
        for (const r of rows) {
          const data = await this.read({ pack: c.id, offset: r.offset, size: r.size, mtime: r.mtime });
          const { pack, offset } = await this.append(r.key, data);
          moves.push(this.commit({ key: r.key, pack, offset, size: r.size, mtime: r.mtime, ifNoneMatch: false, movedFrom: { pack: c.id, offset: r.offset } }));
        }
        await Promise.all(moves);
        report.objectsMoved += rows.length;
      }
      const dropped = await this.write(() => this.s.dropPack.run(c.id, c.id).changes === 1);
      if (!dropped) continue;
      const fd = this.readers.get(c.id);
      if (fd !== undefined) {
        this.readers.delete(c.id);
        closeSync(fd);
      }
      await unlink(this.packPath(c.id)).catch((err) => {
        if (errnoCode(err) !== 'ENOENT') throw err;
      });
      report.packsRemoved++;
      report.bytesFreed += c.bytes - c.live;
    }
    return report;
  }

  /**
   * Runs an index transaction. Another process holding the write lock makes BEGIN fail at once
   * (busy_timeout 0); the attempt is repeated asynchronously rather than in SQLite's busy wait,
   * which would block this event loop.
   */
  private write<T>(fn: () => T): Promise<T> {
    const tx = this.db.transaction(fn).immediate;
    return retryWhileBusy(() => tx());
  }

  private translate(err: unknown, what: string, signal?: AbortSignal): unknown {
    return toBlobStoreError(err, this.describe, what, signal);
  }
}

function checkKey(key: string): void {
  if (key === '' || key.startsWith('/') || key.includes('\0')) throw new Error(`invalid blob key: ${JSON.stringify(key)}`);
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errnoCode(err) === 'EPERM';
  }
}

const writevAsync = promisify(writev);
const readAsync = promisify(read);
const fdatasyncAsync = promisify(fdatasync);

/** pwritev of all of `parts` at `position`, on the thread pool for large data. */
async function writeAll(fd: number, parts: Buffer[], position: number, inline: boolean): Promise<void> {
  const total = parts.reduce((n, b) => n + b.length, 0);
  const written = inline ? writevSync(fd, parts, position) : (await writevAsync(fd, parts, position)).bytesWritten;
  // A regular file takes the whole write unless the disk is full; never index a torn record.
  if (written !== total) throw new BlobStoreError(`short write to a pack: ${written} of ${total} bytes (disk full?)`);
}
