// The cleaner's queries: picking what nothing references, announcing deletions in gc_log and
// acknowledging them. Each picking transaction takes the commit barrier exclusively, so it is
// ordered before or after every upload commit, never interleaved (docs/gc.md).
import { sql, type Transaction } from 'kysely';
import type { MetadataStore } from './metadata-store.js';
import type { Database } from './schema.js';
import { blockKey, extentKey, mapKey, parseKey, type KeyKind } from '../store/keys.js';

const n = (v: unknown): number => (typeof v === 'number' ? v : Number(v));

export class GcStore {
  constructor(private readonly meta: MetadataStore) {}

  private get db() {
    return this.meta.db;
  }

  /** Keys whose deletion was announced but not acknowledged (a cleaner stopped midway). */
  async pendingKeys(limit: number): Promise<string[]> {
    const rows = await this.db.selectFrom('gc_log').select('key').where('pending', '=', 1).orderBy('seq').limit(limit).execute();
    return [...new Set(rows.map((r) => r.key))];
  }

  /**
   * Removes up to `limit` contents that no file names and that have been unreferenced since
   * before `cutoffMs`; gives their blocks back and announces their maps. Returns map keys.
   */
  async takeUnreferencedContents(cutoffMs: number, limit: number): Promise<string[]> {
    return this.db.transaction().execute(async (tx) => {
      await this.meta.gcBarrier(tx, 'exclusive');
      const candidates = await tx
        .selectFrom('contents')
        .select('hash')
        .where('ref_count', '=', 0)
        .where('updated_at', '<=', cutoffMs)
        // Fail closed: a content some file still names is never taken, whatever its count says.
        .where(({ not, exists, selectFrom }) =>
          not(exists(selectFrom('files').select('path').whereRef('files.content_hash', '=', 'contents.hash'))),
        )
        .orderBy('hash')
        .limit(limit)
        .execute();
      if (candidates.length === 0) return [];
      const hashes = candidates.map((c) => c.hash);
      const deleted = (await tx.deleteFrom('contents').where('hash', 'in', hashes).where('ref_count', '=', 0).returning('hash').execute()).map(
        (r) => r.hash,
      );
      if (deleted.length === 0) return [];
      const now = Date.now();
      // Each deleted content held one reference on each distinct block it names.
      await sql`
        update blocks set
          ref_count = ref_count - (
            select count(distinct cb.content_hash) from content_blocks cb
            where cb.block_hash = blocks.hash and cb.content_hash in (${sql.join(deleted)})
          ),
          updated_at = ${now}
        where hash in (select block_hash from content_blocks where content_hash in (${sql.join(deleted)}))
      `.execute(tx);
      await tx.deleteFrom('content_blocks').where('content_hash', 'in', deleted).execute();
      const keys = deleted.map(mapKey);
      await announce(tx, keys, now);
      return keys;
    });
  }

  /**
   * Removes up to `limit` blocks no content names, unreferenced since before `cutoffMs`.
   * Announces their keys, and the extents whose last block this removes; returns what it
   * announced (`keys`) and the objects to delete (`objects`): a block kept in an extent has no
   * object of its own, the extent goes with its last block.
   */
  async takeUnreferencedBlocks(cutoffMs: number, limit: number): Promise<{ keys: string[]; objects: string[] }> {
    return this.db.transaction().execute(async (tx) => {
      await this.meta.gcBarrier(tx, 'exclusive');
      const candidates = await tx
        .selectFrom('blocks')
        .select('hash')
        .where('ref_count', '=', 0)
        .where('updated_at', '<=', cutoffMs)
        .where(({ not, exists, selectFrom }) =>
          not(exists(selectFrom('content_blocks').select('idx').whereRef('content_blocks.block_hash', '=', 'blocks.hash'))),
        )
        .orderBy('hash')
        .limit(limit)
        .execute();
      if (candidates.length === 0) return { keys: [], objects: [] };
      const deleted = await tx
        .deleteFrom('blocks')
        .where('hash', 'in', candidates.map((c) => c.hash))
        .where('ref_count', '=', 0)
        .returning(['hash', 'extent'])
        .execute();
      const extents = [...new Set(deleted.flatMap((r) => (r.extent === null ? [] : [r.extent])))];
      const inUse = await extentsInUse(tx, extents);
      const freed = extents.filter((e) => !inUse.has(e)).map(extentKey);
      const keys = [...deleted.map((r) => blockKey(r.hash)), ...freed];
      await announce(tx, keys, Date.now());
      return { keys, objects: [...deleted.filter((r) => r.extent === null).map((r) => blockKey(r.hash)), ...freed] };
    });
  }

  /**
   * Of these blob keys (found in the bucket), announces and returns those the metadata does not
   * know: crash leftovers. Keys that are not `blocks/<hex>`, `maps/<hex>` or `extents/<hex>`
   * are never taken.
   */
  async takeOrphans(keys: string[]): Promise<string[]> {
    const ids: Record<KeyKind, string[]> = { block: [], map: [], extent: [] };
    for (const key of keys) {
      const parsed = parseKey(key);
      if (parsed) ids[parsed.kind].push(parsed.id);
    }
    const { block: blockHashes, map: mapHashes, extent: extentIds } = ids;
    if (blockHashes.length + mapHashes.length + extentIds.length === 0) return [];
    return this.db.transaction().execute(async (tx) => {
      await this.meta.gcBarrier(tx, 'exclusive');
      const knownBlocks = blockHashes.length
        ? new Set((await tx.selectFrom('blocks').select('hash').where('hash', 'in', blockHashes).execute()).map((r) => r.hash))
        : new Set<string>();
      const knownMaps = mapHashes.length
        ? new Set((await tx.selectFrom('contents').select('hash').where('hash', 'in', mapHashes).execute()).map((r) => r.hash))
        : new Set<string>();
      const knownExtents = await extentsInUse(tx, extentIds, { retired: true });
      const orphans = [
        ...blockHashes.filter((h) => !knownBlocks.has(h)).map(blockKey),
        ...mapHashes.filter((h) => !knownMaps.has(h)).map(mapKey),
        ...extentIds.filter((e) => !knownExtents.has(e)).map(extentKey),
      ];
      await announce(tx, orphans, Date.now());
      return orphans;
    });
  }

  /** Of these extents, the summed stored size of the block rows that name each (those no row names are left out). */
  async extentsLiveBytes(ids: string[]): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for (let i = 0; i < ids.length; i += 500) {
      const rows = await this.db
        .selectFrom('blocks')
        .select((eb) => ['extent', eb.fn.sum<number>('stored_size').as('live')])
        .where('extent', 'in', ids.slice(i, i + 500))
        .groupBy('extent')
        .execute();
      for (const r of rows) if (r.extent !== null) out.set(r.extent, n(r.live));
    }
    return out;
  }

  /** The blocks an extent holds by their rows, in the order of their offsets. */
  async extentBlocks(id: string): Promise<Array<{ hash: string; storedSize: number; offset: number }>> {
    const rows = await this.db
      .selectFrom('blocks')
      .select(['hash', 'stored_size', 'extent_offset'])
      .where('extent', '=', id)
      .orderBy('extent_offset')
      .execute();
    return rows.map((r) => ({ hash: r.hash, storedSize: n(r.stored_size), offset: n(r.extent_offset) }));
  }

  /**
   * Points the rows of blocks that `from` still holds at their copies in `to`, and retires
   * `from` once no row names it (the grace period then runs before it goes). Returns how many
   * rows moved: 0 when the blocks were collected meanwhile, leaving `to` for the caller to delete.
   */
  async moveExtentBlocks(from: string, to: string, places: Array<{ hash: string; offset: number }>): Promise<number> {
    return this.db.transaction().execute(async (tx) => {
      await this.meta.gcBarrier(tx, 'exclusive');
      let moved = 0;
      for (const p of places) {
        const r = await tx
          .updateTable('blocks')
          .set({ extent: to, extent_offset: p.offset })
          .where('hash', '=', p.hash)
          .where('extent', '=', from)
          .executeTakeFirst();
        moved += Number(r.numUpdatedRows);
      }
      if (moved > 0 && (await extentsInUse(tx, [from])).size === 0) {
        await tx.insertInto('retired_extents').values({ id: from, retired_at: Date.now() }).execute();
      }
      return moved;
    });
  }

  /** Takes up to `limit` extents retired before `cutoffMs` and announces their deletion. */
  async takeRetiredExtents(cutoffMs: number, limit: number): Promise<string[]> {
    return this.db.transaction().execute(async (tx) => {
      await this.meta.gcBarrier(tx, 'exclusive');
      const rows = await tx.selectFrom('retired_extents').select('id').where('retired_at', '<=', cutoffMs).orderBy('id').limit(limit).execute();
      if (rows.length === 0) return [];
      const ids = rows.map((r) => r.id);
      await tx.deleteFrom('retired_extents').where('id', 'in', ids).execute();
      // Fail closed: one a row names again (it never should) stays.
      const inUse = await extentsInUse(tx, ids);
      const keys = ids.filter((id) => !inUse.has(id)).map(extentKey);
      await announce(tx, keys, Date.now());
      return keys;
    });
  }

  /** Announces the deletion of objects this cleaner wrote and then found unneeded. */
  async announceUnneeded(keys: string[]): Promise<void> {
    if (keys.length === 0) return;
    await this.db.transaction().execute(async (tx) => {
      await this.meta.gcBarrier(tx, 'exclusive');
      await announce(tx, keys, Date.now());
    });
  }

  /** Acknowledges deletions that completed: clears pending and logs a newer 'done' row. */
  async acknowledge(keys: string[]): Promise<void> {
    if (keys.length === 0) return;
    await this.db.transaction().execute(async (tx) => {
      await tx.updateTable('gc_log').set({ pending: 0 }).where('key', 'in', keys).where('pending', '=', 1).execute();
      const now = Date.now();
      await tx.insertInto('gc_log').values(keys.map((key) => ({ key, pending: 0, created_at: now }))).execute();
    });
  }

  /** Drops acknowledged log rows older than `cutoffMs`, remembering how far it pruned. */
  async prune(cutoffMs: number): Promise<number> {
    return this.db.transaction().execute(async (tx) => {
      const top = await tx
        .selectFrom('gc_log')
        .select((eb) => eb.fn.max('seq').as('m'))
        .where('pending', '=', 0)
        .where('created_at', '<', cutoffMs)
        .executeTakeFirst();
      const through = n(top?.m ?? 0);
      if (!through) return 0;
      const r = await tx.deleteFrom('gc_log').where('seq', '<=', through).where('pending', '=', 0).executeTakeFirst();
      await tx
        .updateTable('gc_state')
        .set({ pruned_through: sql`case when pruned_through > ${through} then pruned_through else ${through} end` })
        .where('id', '=', 1)
        .execute();
      return Number(r.numDeletedRows);
    });
  }
}

/** Those of `extents` that some block row still names (or, with `retired`, that wait out their grace). */
async function extentsInUse(tx: Transaction<Database>, extents: string[], o: { retired?: boolean } = {}): Promise<Set<string>> {
  const inUse = new Set<string>();
  for (let i = 0; i < extents.length; i += 500) {
    const page = extents.slice(i, i + 500);
    const rows = await tx.selectFrom('blocks').select('extent').distinct().where('extent', 'in', page).execute();
    for (const r of rows) if (r.extent !== null) inUse.add(r.extent);
    if (o.retired) for (const r of await tx.selectFrom('retired_extents').select('id').where('id', 'in', page).execute()) inUse.add(r.id);
  }
  return inUse;
}

async function announce(tx: Transaction<Database>, keys: string[], now: number): Promise<void> {
  for (let i = 0; i < keys.length; i += 500) {
    await tx.insertInto('gc_log').values(keys.slice(i, i + 500).map((key) => ({ key, pending: 1, created_at: now }))).execute();
  }
}
