// The 256-entry gear table for FastCDC, derived from SHA-256 so every build and every node cuts identically.
import { createHash } from 'node:crypto';

/**
 * Seed of the gear table. Changing it changes every chunk boundary, so stored
 * blocks would stop deduplicating against new uploads: bump the version suffix
 * only together with the chunker parameters recorded in the bucket descriptor.
 */
export const GEAR_SEED = 's3dedup-ts gear v1';

/**
 * Derive the table in counter mode: digest i = SHA-256(seed + i) yields entries
 * 8i..8i+7 as big-endian 32-bit words. A fixed derivation (rather than a literal
 * table pasted in source) keeps the file short and makes the table reproducible
 * from its description alone, e.g. by a reimplementation in another language.
 */
function deriveGearTable(seed: string): Int32Array {
  const table = new Int32Array(256);
  for (let counter = 0; counter < 32; counter++) {
    const digest = createHash('sha256').update(seed + String(counter)).digest();
    for (let j = 0; j < 8; j++) table[counter * 8 + j] = digest.readInt32BE(j * 4);
  }
  return table;
}

/**
 * GEAR[b] is the random 32-bit value mixed into the rolling hash for byte b.
 * Int32 (not Uint32) values keep the hot loop in V8's small-integer arithmetic.
 *
 * @example
 * h = ((h << 1) + GEAR[byte]) | 0;
 */
export const GEAR: Int32Array = deriveGearTable(GEAR_SEED);
