// fsck: checks the metadata against itself and against the blob store, and optionally repairs
// the reference counts.
//
// What it checks (the counting rules are in meta/metadata-store.ts):
// - contents.ref_count = files rows naming the content; blocks.ref_count = contents rows whose
//   block list names the block (once per content); both recounted from scratch;
// - every content row of other than one block has its map blob and every block row its block blob (HEAD, bounded
//   concurrency), and a block blob is exactly blocks.stored_size bytes (GET sends that many);
//   a block kept in an extent lies inside its extent object;
// - each content's block list is idx 0..block_count-1, names only existing block rows, and its
//   blocks' stored and uncompressed sizes add up to the content's stored_size and logical_size;
// - every files row names an existing content, and no block list belongs to a missing content;
// - objects under blocks/, maps/ and extents/ that the metadata does not know (reported, never deleted:
//   the cleaner's full scan removes them once they are older than its grace period).
// Every table is read in keyset-paginated pages, so memory does not grow with the store.
//
// Repair touches only reference counts, in one transaction that recounts inside the UPDATE
// itself, so a count is right even if the store changed since the scan. On PostgreSQL the
// transaction first takes the commit/cleaner barrier and SHARE locks on files and
// content_blocks (what the counts derive from): commits and deletes wait for the repair.
// Missing blobs and wrong sizes cannot be repaired from the metadata and are only reported.
import { setMaxListeners } from 'node:events';
import { sql, type ExpressionBuilder, type Kysely } from 'kysely';
import type { BlobStore } from '../blobs/blob-store.js';
import type { MetadataStore } from '../meta/metadata-store.js';
import type { Database } from '../meta/schema.js';
import { isWholeMember } from '../store/small-member.js';
import { BLOCK_PREFIX, EXTENT_PREFIX, MAP_PREFIX, blockKey, extentKey, mapKey, parseKey } from '../store/keys.js';
import { Semaphore } from '../util/semaphore.js';

export const FSCK_PROBLEMS = {
  contentRefCount: 'contents.ref_count differs from the number of files naming the content',
  blockRefCount: 'blocks.ref_count differs from the number of contents naming the block',
  missingMap: 'content row (of other than one block) without its map blob (maps/<hash>)',
  missingBlock: 'block row without its blob (blocks/<hash>, or the extent it names)',
  blockSizeMismatch: 'block blob size differs from blocks.stored_size (or the block ends past its extent)',
  blockListMismatch: 'block list length or indexes differ from contents.block_count',
  missingBlockRow: 'block list names a block that has no blocks row',
  storedSizeMismatch: "contents.stored_size differs from the sum of its blocks' stored sizes (or from its gzip member's size)",
  logicalSizeMismatch: "contents.logical_size differs from the sum of its blocks' sizes",
  danglingFile: 'files row naming a content that has no contents row',
  orphanBlockList: 'content_blocks rows of a content that has no contents row',
  unknownObject: 'object under blocks/, maps/ or extents/ that the metadata does not know',
} as const;

export type FsckProblemKind = keyof typeof FSCK_PROBLEMS;
export const FSCK_PROBLEM_KINDS = Object.keys(FSCK_PROBLEMS) as FsckProblemKind[];

export interface FsckExample {
  /** hash, path or blob key the problem is about */
  subject: string;
  detail: string;
}

export interface FsckFindings {
  count: number;
  /** the first `maxExamples` findings */
  examples: FsckExample[];
}

export interface FsckRepair {
  /** contents rows whose ref_count was rewritten */
  contents: number;
  /** blocks rows whose ref_count was rewritten */
  blocks: number;
  /** the first `maxExamples` changes, `ref_count 3 -> 1` */
  changes: FsckExample[];
}

export interface FsckReport {
  scanned: { files: number; contents: number; blocks: number; objects: number };
  problems: Record<FsckProblemKind, FsckFindings>;
  /** findings of every kind, repaired ones included */
  problemCount: number;
  /** no finding of any kind */
  clean: boolean;
  /** what --repair changed; null without --repair or when no count was wrong */
  repair: FsckRepair | null;
  durationMs: number;
}

export interface FsckOptions {
  /** rewrite wrong reference counts (nothing else is ever changed) */
  repair?: boolean;
  /** progress lines (phases, page counts); default: silent */
  print?: (line: string) => void;
  /** examples kept per problem kind; default 20 */
  maxExamples?: number;
  /** HEAD requests in flight; default 16 */
  concurrency?: number;
  /** rows per page and keys per lookup; default 1000 */
  pageSize?: number;
}

const n = (v: unknown): number => (v === null || v === undefined ? 0 : typeof v === 'number' ? v : Number(v));

/**
 * Checks the store and returns what it found; with `repair`, also rewrites wrong reference
 * counts. Throws (and repairs nothing) when the metadata or the blob store cannot be read.
 *
 * @example
 * const report = await runFsck(runtime, { repair: false, print: console.log });
 * process.stdout.write(formatFsckReport(report));
 * process.exitCode = report.clean ? 0 : 1;
 */
export async function runFsck(runtime: { meta: MetadataStore; blobs: BlobStore }, options: FsckOptions = {}): Promise<FsckReport> {
  const started = Date.now();
  const fsck = new Fsck(runtime.meta, runtime.blobs, {
    maxExamples: options.maxExamples ?? 20,
    concurrency: options.concurrency ?? 16,
    pageSize: options.pageSize ?? 1000,
    print: options.print ?? (() => undefined),
  });
  await fsck.checkFiles();
  await fsck.checkContents();
  await fsck.checkOrphanBlockLists();
  await fsck.checkBlocks();
  await fsck.checkUnknownObjects();
  const report = fsck.report();
  if (options.repair && (report.problems.contentRefCount.count > 0 || report.problems.blockRefCount.count > 0)) {
    report.repair = await fsck.repairCounts();
  }
  report.durationMs = Date.now() - started;
  return report;
}

/** The report as text for a terminal: a summary line per problem kind and its examples. */
export function formatFsckReport(report: FsckReport, maxExamples = 20): string {
  const s = report.scanned;
  const lines = [`fsck: scanned ${s.files} files, ${s.contents} contents, ${s.blocks} blocks, ${s.objects} objects in ${(report.durationMs / 1000).toFixed(1)} s`];
  for (const kind of FSCK_PROBLEM_KINDS) {
    const f = report.problems[kind];
    if (f.count === 0) continue;
    lines.push(`${kind}: ${f.count} (${FSCK_PROBLEMS[kind]})`);
    for (const e of f.examples.slice(0, maxExamples)) lines.push(`  ${e.subject}: ${e.detail}`);
    if (f.count > Math.min(f.examples.length, maxExamples)) lines.push(`  ... and ${f.count - Math.min(f.examples.length, maxExamples)} more`);
  }
  if (report.repair) {
    const r = report.repair;
    lines.push(`repaired: ${r.contents} content reference counts, ${r.blocks} block reference counts`);
    for (const e of r.changes.slice(0, maxExamples)) lines.push(`  ${e.subject}: ${e.detail}`);
    const shown = Math.min(r.changes.length, maxExamples);
    if (r.contents + r.blocks > shown) lines.push(`  ... and ${r.contents + r.blocks - shown} more`);
  }
  if (report.problems.unknownObject.count > 0) {
    lines.push('note: unknown objects may be uploads in flight or crash leftovers; the cleaner\'s full scan deletes them after its grace period');
  }
  const unrepairable = report.problemCount - (report.repair ? report.problems.contentRefCount.count + report.problems.blockRefCount.count : 0);
  if (report.clean) lines.push('fsck: clean');
  else if (report.repair && unrepairable === 0) lines.push(`fsck: ${report.problemCount} problems found, all repaired`);
  else lines.push(`fsck: ${report.problemCount} problems found${report.repair ? `, ${unrepairable} not repairable by fsck` : ''}`);
  return `${lines.join('\n')}\n`;
}

interface FsckSettings {
  maxExamples: number;
  concurrency: number;
  pageSize: number;
  print: (line: string) => void;
}

class Fsck {
  private readonly db: Kysely<Database>;
  private readonly problems = Object.fromEntries(FSCK_PROBLEM_KINDS.map((k) => [k, { count: 0, examples: [] }])) as unknown as Record<
    FsckProblemKind,
    FsckFindings
  >;
  private readonly scanned = { files: 0, contents: 0, blocks: 0, objects: 0 };

  constructor(
    private readonly meta: MetadataStore,
    private readonly blobs: BlobStore,
    private readonly o: FsckSettings,
  ) {
    this.db = meta.db;
  }

  report(): FsckReport {
    const problemCount = FSCK_PROBLEM_KINDS.reduce((sum, k) => sum + this.problems[k].count, 0);
    return { scanned: { ...this.scanned }, problems: this.problems, problemCount, clean: problemCount === 0, repair: null, durationMs: 0 };
  }

  private found(kind: FsckProblemKind, subject: string, detail: string, times = 1): void {
    const f = this.problems[kind];
    f.count += times;
    if (f.examples.length < this.o.maxExamples) f.examples.push({ subject, detail });
  }

  /** Files naming a content that has no row. */
  async checkFiles(): Promise<void> {
    this.o.print('fsck: checking files');
    let after: string | null = null;
    for (;;) {
      let q = this.db
        .selectFrom('files as f')
        .leftJoin('contents as c', 'c.hash', 'f.content_hash')
        .select(['f.path', 'f.content_hash', 'c.hash as known'])
        .orderBy('f.path')
        .limit(this.o.pageSize);
      if (after !== null) q = q.where('f.path', '>', after);
      const rows = await q.execute();
      for (const r of rows) {
        if (r.known === null) this.found('danglingFile', r.path, `names content ${r.content_hash}, which has no contents row`);
      }
      this.scanned.files += rows.length;
      if (rows.length < this.o.pageSize) return;
      after = rows[rows.length - 1].path;
    }
  }

  /** Content reference counts, block lists, sizes and map blobs, one page of contents at a time. */
  async checkContents(): Promise<void> {
    this.o.print('fsck: checking contents and their maps');
    let after: string | null = null;
    for (;;) {
      let q = this.db
        .selectFrom('contents')
        .select(['hash', 'ref_count', 'block_count', 'stored_size', 'logical_size'])
        .orderBy('hash')
        .limit(this.o.pageSize);
      if (after !== null) q = q.where('hash', '>', after);
      const page = await q.execute();
      if (page.length === 0) return;
      const hashes = page.map((r) => r.hash);

      const fileCounts = new Map<string, number>();
      for (const r of await this.db
        .selectFrom('files')
        .select((eb) => ['content_hash', eb.fn.countAll().as('n')])
        .where('content_hash', 'in', hashes)
        .groupBy('content_hash')
        .execute()) {
        fileCounts.set(r.content_hash, n(r.n));
      }

      const lists = new Map<string, { links: number; present: number; stored: number; size: number; minIdx: number; maxIdx: number }>();
      for (const r of await this.db
        .selectFrom('content_blocks as cb')
        .leftJoin('blocks as b', 'b.hash', 'cb.block_hash')
        .select((eb) => [
          'cb.content_hash',
          eb.fn.countAll().as('links'),
          eb.fn.count('b.hash').as('present'),
          eb.fn.sum('b.stored_size').as('stored'),
          eb.fn.sum('b.size').as('size'),
          eb.fn.min('cb.idx').as('min_idx'),
          eb.fn.max('cb.idx').as('max_idx'),
        ])
        .where('cb.content_hash', 'in', hashes)
        .groupBy('cb.content_hash')
        .execute()) {
        lists.set(r.content_hash, {
          links: n(r.links),
          present: n(r.present),
          stored: n(r.stored),
          size: n(r.size),
          minIdx: n(r.min_idx),
          maxIdx: n(r.max_idx),
        });
      }

      // A whole-member content has no blocks; its map blob is its gzip member, of exactly stored_size bytes.
      const memberSizes = new Map<string, number>();
      for (const c of page) {
        if (isWholeMember({ blockCount: n(c.block_count), storedSize: n(c.stored_size) })) memberSizes.set(c.hash, n(c.stored_size));
      }

      for (const c of page) {
        const refCount = n(c.ref_count);
        const files = fileCounts.get(c.hash) ?? 0;
        if (refCount !== files) this.found('contentRefCount', c.hash, `ref_count ${refCount}, named by ${files} files`);
        const blockCount = n(c.block_count);
        const list = lists.get(c.hash) ?? { links: 0, present: 0, stored: 0, size: 0, minIdx: 0, maxIdx: -1 };
        if (list.links !== blockCount || (list.links > 0 && (list.minIdx !== 0 || list.maxIdx !== list.links - 1))) {
          this.found('blockListMismatch', c.hash, `block_count ${blockCount}, block list has ${list.links} entries (idx ${list.minIdx}..${list.maxIdx})`);
        }
        if (list.present < list.links) {
          this.found('missingBlockRow', c.hash, `${list.links - list.present} of ${list.links} listed blocks have no blocks row`);
          continue; // the sums below would only repeat that
        }
        if (memberSizes.has(c.hash)) continue; // no blocks: its member is checked below
        if (list.stored !== n(c.stored_size)) {
          this.found('storedSizeMismatch', c.hash, `stored_size ${n(c.stored_size)}, its blocks store ${list.stored} bytes`);
        }
        if (list.size !== n(c.logical_size)) {
          this.found('logicalSizeMismatch', c.hash, `logical_size ${n(c.logical_size)}, its blocks hold ${list.size} bytes`);
        }
      }

      // A content of one block has no map (store/file-store.ts): its block is the whole content.
      const mapped = page.filter((c) => n(c.block_count) !== 1).map((c) => c.hash);
      await this.headAll(mapped, async (hash, signal) => {
        const info = await this.blobs.head(mapKey(hash), signal);
        if (info === null) this.found('missingMap', mapKey(hash), 'absent from the blob store');
        else if (memberSizes.has(hash) && info.size !== memberSizes.get(hash)) {
          this.found('storedSizeMismatch', hash, `stored_size ${memberSizes.get(hash)}, its gzip member ${mapKey(hash)} has ${info.size} bytes`);
        }
      });

      this.scanned.contents += page.length;
      if (this.scanned.contents % (this.o.pageSize * 10) === 0) this.o.print(`fsck: ${this.scanned.contents} contents checked`);
      if (page.length < this.o.pageSize) return;
      after = page[page.length - 1].hash;
    }
  }

  /** Block lists whose content row is gone (they would hold block references nobody owns). */
  async checkOrphanBlockLists(): Promise<void> {
    let after: string | null = null;
    for (;;) {
      let q = this.db
        .selectFrom('content_blocks as cb')
        .leftJoin('contents as c', 'c.hash', 'cb.content_hash')
        .select((eb) => ['cb.content_hash', eb.fn.countAll().as('links')])
        .where('c.hash', 'is', null)
        .groupBy('cb.content_hash')
        .orderBy('cb.content_hash')
        .limit(this.o.pageSize);
      if (after !== null) q = q.where('cb.content_hash', '>', after);
      const rows = await q.execute();
      for (const r of rows) this.found('orphanBlockList', r.content_hash, `${n(r.links)} content_blocks rows, no contents row`);
      if (rows.length < this.o.pageSize) return;
      after = rows[rows.length - 1].content_hash;
    }
  }

  /** Block reference counts, blobs and blob sizes, one page of blocks at a time. */
  async checkBlocks(): Promise<void> {
    this.o.print('fsck: checking blocks');
    let after: string | null = null;
    for (;;) {
      let q = this.db
        .selectFrom('blocks')
        .select(['hash', 'ref_count', 'stored_size', 'extent', 'extent_offset'])
        .orderBy('hash')
        .limit(this.o.pageSize);
      if (after !== null) q = q.where('hash', '>', after);
      const page = await q.execute();
      if (page.length === 0) return;
      const hashes = page.map((r) => r.hash);

      const counted = new Map<string, number>();
      for (const r of await this.db
        .selectFrom('content_blocks as cb')
        .innerJoin('contents as c', 'c.hash', 'cb.content_hash')
        .select((eb) => ['cb.block_hash', eb.fn.count('cb.content_hash').distinct().as('n')])
        .where('cb.block_hash', 'in', hashes)
        .groupBy('cb.block_hash')
        .execute()) {
        counted.set(r.block_hash, n(r.n));
      }
      const stored = new Map<string, number>();
      const inExtents = new Map<string, typeof page>();
      for (const b of page) {
        const refCount = n(b.ref_count);
        const contents = counted.get(b.hash) ?? 0;
        if (refCount !== contents) this.found('blockRefCount', b.hash, `ref_count ${refCount}, named by ${contents} contents`);
        stored.set(b.hash, n(b.stored_size));
        if (b.extent === null) continue;
        const sharing = inExtents.get(b.extent);
        if (sharing) sharing.push(b);
        else inExtents.set(b.extent, [b]);
      }

      await this.headAll(
        page.filter((b) => b.extent === null).map((b) => b.hash),
        async (hash, signal) => {
          const info = await this.blobs.head(blockKey(hash), signal);
          if (info === null) this.found('missingBlock', blockKey(hash), 'absent from the blob store');
          else if (info.size !== stored.get(hash)) {
            this.found('blockSizeMismatch', blockKey(hash), `blob has ${info.size} bytes, stored_size says ${stored.get(hash)}`);
          }
        },
      );
      // A block in an extent must lie inside it (the segments' bytes are read only by GET).
      await this.headAll([...inExtents.keys()], async (extent, signal) => {
        const info = await this.blobs.head(extentKey(extent), signal);
        for (const b of inExtents.get(extent)!) {
          const end = n(b.extent_offset) + n(b.stored_size);
          if (info === null) this.found('missingBlock', blockKey(b.hash), `its extent ${extentKey(extent)} is absent from the blob store`);
          else if (end > info.size) {
            this.found('blockSizeMismatch', blockKey(b.hash), `ends at byte ${end} of ${extentKey(extent)}, which has ${info.size}`);
          }
        }
      });

      this.scanned.blocks += page.length;
      if (this.scanned.blocks % (this.o.pageSize * 10) === 0) this.o.print(`fsck: ${this.scanned.blocks} blocks checked`);
      if (page.length < this.o.pageSize) return;
      after = page[page.length - 1].hash;
    }
  }

  /** Lists blocks/, maps/ and extents/ and looks each page of keys up in the metadata. */
  async checkUnknownObjects(): Promise<void> {
    this.o.print('fsck: listing the blob store');
    const lookups = [
      { prefix: BLOCK_PREFIX, kind: 'block', what: 'blocks row', known: (ids: string[]) => this.db.selectFrom('blocks').select('hash as id').where('hash', 'in', ids) },
      { prefix: MAP_PREFIX, kind: 'map', what: 'contents row', known: (ids: string[]) => this.db.selectFrom('contents').select('hash as id').where('hash', 'in', ids) },
      {
        prefix: EXTENT_PREFIX,
        kind: 'extent',
        what: 'block in it',
        // A retired extent (compacted, waiting out its grace period) is known too.
        known: (ids: string[]) =>
          this.db
            .selectFrom('blocks')
            .select('extent as id')
            .where('extent', 'in', ids)
            .union(this.db.selectFrom('retired_extents').select('id').where('id', 'in', ids)),
      },
    ] as const;
    for (const { prefix, kind, what, known: query } of lookups) {
      let batch: string[] = [];
      const flush = async () => {
        const parsed = batch.map((key) => {
          const p = parseKey(key);
          return { key, id: p?.kind === kind ? p.id : null };
        });
        const ids = parsed.flatMap((p) => (p.id === null ? [] : [p.id]));
        const known = new Set<string | null>();
        if (ids.length > 0) for (const r of await query(ids).execute()) known.add(r.id);
        for (const { key, id } of parsed) {
          if (id === null) this.found('unknownObject', key, 'not a key of this store');
          else if (!known.has(id)) this.found('unknownObject', key, `no ${what}`);
        }
        this.scanned.objects += batch.length;
        batch = [];
      };
      for await (const info of this.blobs.list(prefix)) {
        batch.push(info.key);
        if (batch.length >= this.o.pageSize) await flush();
      }
      if (batch.length > 0) await flush();
    }
  }

  /** Rewrites every wrong reference count, recounted inside the UPDATE, in one transaction. */
  async repairCounts(): Promise<FsckRepair> {
    this.o.print('fsck: repairing reference counts');
    const repair: FsckRepair = { contents: 0, blocks: 0, changes: [] };
    const note = (subject: string, from: unknown, to: unknown) => {
      if (repair.changes.length < this.o.maxExamples) repair.changes.push({ subject, detail: `ref_count ${n(from)} -> ${n(to)}` });
    };
    const fileCount = (eb: ExpressionBuilder<Database, 'contents'>) =>
      eb.selectFrom('files').select((e) => e.fn.countAll<number>().as('n')).whereRef('files.content_hash', '=', 'contents.hash');
    const contentCount = (eb: ExpressionBuilder<Database, 'blocks'>) =>
      eb
        .selectFrom('content_blocks as cb')
        .innerJoin('contents as c', 'c.hash', 'cb.content_hash')
        .select((e) => e.fn.count<number>('cb.content_hash').distinct().as('n'))
        .whereRef('cb.block_hash', '=', 'blocks.hash');

    await this.db.transaction().execute(async (tx) => {
      if (this.meta.isPostgres) {
        // Commits and the cleaner wait at the barrier (taken before any row lock, so no
        // deadlock with them); deletes wait at the table locks.
        await this.meta.gcBarrier(tx, 'exclusive');
        await sql`lock table files, content_blocks in share mode`.execute(tx);
      }
      const now = Date.now();
      let after = '';
      for (;;) {
        const wrong = await tx
          .selectFrom('contents')
          .select((eb) => ['hash', 'ref_count', fileCount(eb).as('actual')])
          .where('hash', '>', after)
          .where((eb) => eb('ref_count', '<>', fileCount(eb)))
          .orderBy('hash')
          .limit(this.o.pageSize)
          .execute();
        if (wrong.length === 0) break;
        await tx
          .updateTable('contents')
          .set((eb) => ({ ref_count: fileCount(eb), updated_at: now }))
          .where('hash', 'in', wrong.map((r) => r.hash))
          .execute();
        for (const r of wrong) note(r.hash, r.ref_count, r.actual);
        repair.contents += wrong.length;
        after = wrong[wrong.length - 1].hash;
      }
      after = '';
      for (;;) {
        const wrong = await tx
          .selectFrom('blocks')
          .select((eb) => ['hash', 'ref_count', contentCount(eb).as('actual')])
          .where('hash', '>', after)
          .where((eb) => eb('ref_count', '<>', contentCount(eb)))
          .orderBy('hash')
          .limit(this.o.pageSize)
          .execute();
        if (wrong.length === 0) break;
        await tx
          .updateTable('blocks')
          .set((eb) => ({ ref_count: contentCount(eb), updated_at: now }))
          .where('hash', 'in', wrong.map((r) => r.hash))
          .execute();
        for (const r of wrong) note(r.hash, r.ref_count, r.actual);
        repair.blocks += wrong.length;
        after = wrong[wrong.length - 1].hash;
      }
    });
    return repair;
  }

  /** Runs `fn` on every item, at most `concurrency` at once; the first failure stops the rest. */
  private async headAll(items: string[], fn: (item: string, signal: AbortSignal) => Promise<void>): Promise<void> {
    const sem = new Semaphore(this.o.concurrency);
    const abort = new AbortController();
    // Every HEAD in flight listens on the one signal; more than Node's default 10 is expected.
    setMaxListeners(this.o.concurrency + 10, abort.signal);
    const results = await Promise.allSettled(
      items.map(async (item) => {
        await sem.acquire();
        try {
          abort.signal.throwIfAborted();
          await fn(item, abort.signal);
        } catch (err) {
          abort.abort(err);
          throw err;
        } finally {
          sem.release();
        }
      }),
    );
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }
}
