// PostgreSQL only: an upload's commit and a delete's as one function call each, so they cost one
// round trip instead of eight statements (BEGIN, the GC barrier, the file lookup, the content
// insert, the two checks against the garbage-collection log, the file row, COMMIT) or five. They
// do what MetadataStore.commitPut and commitDelete do through Kysely, statement for statement;
// src/meta/pg-commit.ts calls them and test/meta/pg-commit.test.ts holds the two to the same
// results. A failed check raises SQLSTATE S3D01 with the reason, which rolls the call back and
// becomes a retryable 503.
import { sql, type Kysely } from 'kysely';
import { isPostgres } from '../src/meta/dialect.js';

export async function up(db: Kysely<any>): Promise<void> {
  if (!isPostgres(db)) return;
  await sql`
create or replace function s3dedup_commit_put(
  p_barrier bigint, p_path text, p_version bigint, p_now bigint,
  p_hash text, p_logical_size bigint, p_stored_size bigint, p_crc32 bigint, p_block_count integer,
  p_start_seq bigint, p_map_written boolean, p_keys text[], p_links text[],
  p_b_hash text[], p_b_size integer[], p_b_stored integer[], p_b_crc bigint[], p_b_extent text[], p_b_offset bigint[]
) returns table (r_applied boolean, r_version bigint)
language plpgsql as $fn$
declare
  e_version bigint;
  e_hash text;
  inserted text;
  pruned bigint;
  hit text;
begin
  perform pg_advisory_xact_lock_shared(p_barrier);
  select f.version, f.content_hash into e_version, e_hash from files f where f.path = p_path;
  if e_hash is not null and e_version > p_version then
    return query select false, e_version;
    return;
  end if;

  insert into contents as c (hash, logical_size, stored_size, crc32, block_count, ref_count, updated_at)
    values (p_hash, p_logical_size, p_stored_size, p_crc32, p_block_count, 1, p_now)
    on conflict (hash) do nothing
    returning c.hash into inserted;
  if inserted is null then
    update contents c set ref_count = c.ref_count + 1, updated_at = p_now where c.hash = p_hash;
    if not found then
      raise exception using errcode = 'S3D01', message = 'the content was collected during the commit';
    end if;
  else
    if not p_map_written then
      raise exception using errcode = 'S3D01', message = 'the content map was collected during the upload';
    end if;
    select s.pruned_through into pruned from gc_state s where s.id = 1;
    if coalesce(pruned, 0) > p_start_seq then
      raise exception using errcode = 'S3D01', message = 'the upload outlived the garbage-collection log retention';
    end if;
    select g.key into hit from gc_log g where g.key = any(p_keys) and (g.seq > p_start_seq or g.pending = 1) limit 1;
    if hit is not null then
      raise exception using errcode = 'S3D01', message = hit || ' was garbage-collected during the upload';
    end if;
    insert into content_blocks (content_hash, idx, block_hash)
      select p_hash, (t.ord - 1)::integer, t.h from unnest(p_links) with ordinality as t(h, ord);
    -- The caller passes the distinct blocks in hash order (distinctBlocks), so concurrent commits lock rows in one order.
    insert into blocks as b (hash, size, stored_size, crc32, ref_count, updated_at, extent, extent_offset)
      select t.h, t.s, t.st, t.c, 1, p_now, t.e, t.o
        from unnest(p_b_hash, p_b_size, p_b_stored, p_b_crc, p_b_extent, p_b_offset) with ordinality as t(h, s, st, c, e, o, ord)
        order by t.ord
      on conflict (hash) do update set ref_count = b.ref_count + 1, updated_at = p_now;
  end if;

  if e_hash is not null then
    update contents c set ref_count = c.ref_count - 1, updated_at = p_now where c.hash = e_hash;
    update files f set version = p_version, content_hash = p_hash, logical_size = p_logical_size, updated_at = p_now where f.path = p_path;
  else
    insert into files (path, version, content_hash, logical_size, updated_at) values (p_path, p_version, p_hash, p_logical_size, p_now);
  end if;
  return query select true, p_version;
end
$fn$`.execute(db);
  await sql`
create or replace function s3dedup_commit_delete(p_path text, p_version bigint, p_now bigint) returns text
language plpgsql as $fn$
declare
  e_version bigint;
  e_hash text;
begin
  select f.version, f.content_hash into e_version, e_hash from files f where f.path = p_path;
  if e_hash is null then
    return 'absent';
  end if;
  if e_version > p_version then
    return 'ignored';
  end if;
  delete from files f where f.path = p_path;
  update contents c set ref_count = c.ref_count - 1, updated_at = p_now where c.hash = e_hash;
  return 'deleted';
end
$fn$`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  if (!isPostgres(db)) return;
  await sql`drop function if exists s3dedup_commit_delete`.execute(db);
  await sql`drop function if exists s3dedup_commit_put`.execute(db);
}
