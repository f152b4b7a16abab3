// libdeflate, hashing off the event loop and FastCDC's inner loop, as a Node addon
// (native/libdeflate-addon.c, built by `npm ci` through binding.gyp), or null when the addon is not
// built: segments are then deflated, and small bodies inflated, by zlib, and blocks and contents
// hashed and cut on the event loop.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface NativeDeflate {
  /** output bytes compress() needs for an input of `length` bytes */
  bound(length: number): number;
  /**
   * Raw deflate of `input` (>= NATIVE_MIN_BYTES) into `output` at libdeflate `level` 1-12, ending
   * in a sync flush; on the addon's threads. Resolves with the bytes written.
   */
  compress(input: Buffer, output: Buffer, level: number): Promise<number>;
  /** SHA-256 of `input` into `digest` (32 bytes); resolves with its CRC-32. On the addon's threads. */
  hashBlock(input: Buffer, digest: Buffer): Promise<number>;
  /** compress() on the calling thread, for contents of a few KiB; returns the bytes written. */
  compressSync(input: Buffer, output: Buffer, level: number): number;
  /**
   * Inflates `input` into `output` on the calling thread; true when `input` is exactly one
   * complete raw deflate stream whose content fills `output` exactly.
   */
  inflateExact(input: Buffer, output: Buffer): boolean;
  /** A new SHA-256 state for one content (opaque; freed with it). */
  contentHash(): ContentHashState;
  /** Feeds `input` to `state` on the addon's threads, after every update of `state` submitted before. */
  contentHashUpdate(state: ContentHashState, input: Buffer): Promise<void>;
  /** The SHA-256 of all that was fed into `digest` (32 bytes); throws while updates are out. Spends the state. */
  contentHashDigest(state: ContentHashState, digest: Buffer): void;
  /**
   * FastCDC's cut search on the calling thread (src/store/chunker.ts has the same loop): rolls the
   * gear hash from `hash` over input[from, end), testing maskS before normalEnd and maskL after.
   * Returns the cut, or -1 - the final hash (as an unsigned 32-bit number) when there is none.
   */
  gearScan(input: Buffer, gear: Int32Array, from: number, normalEnd: number, end: number, hash: number, maskS: number, maskL: number): number;
}

/** What contentHash() returns: only the addon reads it. */
export type ContentHashState = { readonly __brand: 'ContentHashState' };

/** The addon refuses shorter inputs (libdeflate would end them with a final block). */
export const NATIVE_MIN_BYTES = 64;

/** Where node-gyp puts the addon, under the project's root. */
const ADDON = join('build', 'Release', 's3dedup_deflate.node');

/**
 * The addon from the nearest directory above this module that has it: the project's root from
 * src/store (tsx, vitest), from dist/src/store (npm start) and from a build elsewhere below it
 * (the bench's, in bench/.cache/dist).
 */
function load(): { addon: NativeDeflate | null; why?: string } {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    const path = join(dir, ADDON);
    if (existsSync(path)) {
      try {
        return { addon: createRequire(import.meta.url)(path) as NativeDeflate };
      } catch (err) {
        return { addon: null, why: `${path}: ${(err as Error).message}` };
      }
    }
    if (dirname(dir) === dir) return { addon: null, why: `${ADDON} not found above ${fileURLToPath(import.meta.url)} (npm ci builds it)` };
  }
}

const loaded = load();

/** The addon, or null; `nativeDeflateMissing` says why it is null. */
export const nativeDeflate: NativeDeflate | null = loaded.addon;
export const nativeDeflateMissing: string | undefined = loaded.why;
