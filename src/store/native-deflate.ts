// libdeflate's compressor as a Node addon (native/deflate-segment.c, built by `npm ci` through
// binding.gyp), or null when the addon is not built: segments are then deflated with zlib.
import { createRequire } from 'node:module';

export interface NativeDeflate {
  /** output bytes compress() needs for an input of `length` bytes */
  bound(length: number): number;
  /**
   * Raw deflate of `input` (>= NATIVE_MIN_BYTES) into `output` at libdeflate `level` 1-12, ending
   * in a sync flush; on the addon's threads. Resolves with the bytes written.
   */
  compress(input: Buffer, output: Buffer, level: number): Promise<number>;
}

/** The addon refuses shorter inputs (libdeflate would end them with a final block). */
export const NATIVE_MIN_BYTES = 64;

/** Where node-gyp puts the addon, seen from src/store (tsx, vitest) and from dist/src/store (npm start). */
const CANDIDATES = ['../../build/Release/deflate_segment.node', '../../../build/Release/deflate_segment.node'];

function load(): { addon: NativeDeflate | null; why?: string } {
  const require = createRequire(import.meta.url);
  let why = 'build/Release/deflate_segment.node not found (npm ci builds it)';
  for (const path of CANDIDATES) {
    try {
      return { addon: require(path) as NativeDeflate };
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code !== 'MODULE_NOT_FOUND') why = `${path}: ${e.message}`;
    }
  }
  return { addon: null, why };
}

const loaded = load();

/** The addon, or null; `nativeDeflateMissing` says why it is null. */
export const nativeDeflate: NativeDeflate | null = loaded.addon;
export const nativeDeflateMissing: string | undefined = loaded.why && !loaded.addon ? loaded.why : undefined;
