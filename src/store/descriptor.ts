// The bucket/directory descriptor: a small object at `s3dedup.json` recording the layout and
// chunker parameters, so a store is self-describing and a server configured differently
// refuses to start on it instead of silently mixing incompatible blocks.
import { BlobExistsError, BlobNotFoundError } from '../errors.js';
import type { BlobStore } from '../blobs/blob-store.js';
import type { ChunkerParams } from './chunker.js';
import { GEAR_SEED } from './gear.js';
import { DESCRIPTOR_KEY } from './keys.js';

/**
 * Layout 2 added contents stored as one whole gzip member (store/small-member.ts), which a
 * layout-1 build would answer with a 500; layout 3 added blocks kept in extent objects
 * (store/extent.ts), which a layout-2 build would not find. An older build refuses a newer
 * store at start; a newer build upgrades an older store's descriptor (nothing else differs).
 */
export const LAYOUT = 3;

export interface StoreDescriptor {
  format: 's3dedup-ts';
  layout: 1 | 2 | 3;
  hash: 'sha256';
  compression: 'deflate-raw-full-flush';
  chunker: { algorithm: 'fastcdc-gear32'; gear: string } & ChunkerParams;
  createdAt: string;
}

export function describeStore(chunker: ChunkerParams): StoreDescriptor {
  return {
    format: 's3dedup-ts',
    layout: LAYOUT,
    hash: 'sha256',
    compression: 'deflate-raw-full-flush',
    chunker: { algorithm: 'fastcdc-gear32', gear: GEAR_SEED, ...chunker },
    createdAt: new Date().toISOString(),
  };
}

/**
 * Writes the descriptor on a fresh store, or checks that the existing one matches this
 * configuration. Throws an Error saying what differs.
 */
export async function ensureDescriptor(blobs: BlobStore, chunker: ChunkerParams): Promise<StoreDescriptor> {
  const wanted = describeStore(chunker);
  let existing: StoreDescriptor;
  try {
    existing = JSON.parse((await blobs.get(DESCRIPTOR_KEY)).toString('utf8'));
  } catch (err) {
    if (!(err instanceof BlobNotFoundError)) {
      if (err instanceof SyntaxError) throw new Error(`${blobs.describe}/${DESCRIPTOR_KEY} is not valid JSON`);
      throw err;
    }
    try {
      await blobs.put(DESCRIPTOR_KEY, Buffer.from(JSON.stringify(wanted, null, 2) + '\n'), { ifNoneMatch: true });
      return wanted;
    } catch (e) {
      if (!(e instanceof BlobExistsError)) throw e;
      // Another instance created it first: compare against theirs.
      existing = JSON.parse((await blobs.get(DESCRIPTOR_KEY)).toString('utf8'));
    }
  }
  const problems: string[] = [];
  if (existing.format !== wanted.format) problems.push(`format ${JSON.stringify(existing.format)} (expected ${wanted.format})`);
  // Older layouts are this one without its later kinds of objects: they are upgraded below.
  if (existing.layout !== wanted.layout && existing.layout !== 1 && existing.layout !== 2) problems.push(`layout ${existing.layout} (expected ${wanted.layout})`);
  if (existing.hash !== wanted.hash) problems.push(`hash ${existing.hash}`);
  if (existing.compression !== wanted.compression) problems.push(`compression ${existing.compression}`);
  for (const k of ['algorithm', 'gear', 'minSize', 'avgSize', 'maxSize'] as const) {
    if (existing.chunker?.[k] !== wanted.chunker[k]) {
      problems.push(`chunker.${k} ${JSON.stringify(existing.chunker?.[k])} (configured ${JSON.stringify(wanted.chunker[k])})`);
    }
  }
  if (problems.length > 0) {
    throw new Error(`the store at ${blobs.describe} was created with a different layout: ${problems.join(', ')}; ` +
      'use the chunker settings it records or another bucket/directory');
  }
  if (existing.layout !== LAYOUT) {
    existing = { ...existing, layout: LAYOUT };
    await blobs.put(DESCRIPTOR_KEY, Buffer.from(JSON.stringify(existing, null, 2) + '\n'));
  }
  return existing;
}
