// Which local blob store a data directory holds: packs (the default for a new directory) or one
// file per object (every store made before packs existed, or chosen with LOCAL_LAYOUT=files).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { PACK_INDEX } from './packed.js';

export type LocalLayout = 'packs' | 'files';

/**
 * The layout to open `root` with. `auto` keeps what the directory already holds and picks packs
 * for a new one; an explicit choice that contradicts the directory is refused, since the other
 * store would see none of its objects.
 *
 * @returns the layout, or throws an Error whose message says what to set
 * @example
 * resolveLocalLayout('/data/blobs', 'auto'); // 'packs' for an empty directory
 */
export function resolveLocalLayout(root: string, wanted: LocalLayout | 'auto'): LocalLayout {
  const hasPacks = existsSync(join(root, PACK_INDEX));
  // A file-layout store always has its descriptor, or at least a block, once it was used.
  const hasFiles = existsSync(join(root, 's3dedup.json')) || existsSync(join(root, 'blocks'));
  if (hasPacks && hasFiles) throw new Error(`${root} holds both a packed store (${PACK_INDEX}) and one file per object; keep one`);
  const found: LocalLayout | null = hasPacks ? 'packs' : hasFiles ? 'files' : null;
  if (wanted === 'auto') return found ?? 'packs';
  if (found !== null && found !== wanted) {
    throw new Error(`LOCAL_LAYOUT=${wanted}, but ${root} holds a store in the ${found} layout; set LOCAL_LAYOUT=${found} or auto`);
  }
  return wanted;
}
