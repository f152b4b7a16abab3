// Framing for ONE gzip member around stored deflate segments: header, segments in order, empty final block, trailer.
//
// One member, never several: curl 7.88 `--compressed` and other clients decode only the first
// member of a multi-member body and silently drop the rest (DESIGN.md §4).
import { crc32Combine } from './crc32-combine.js';

/**
 * RFC 1952 header: magic 1f 8b, method 8 (deflate), no flags, mtime 0 (so the same
 * content always yields the same bytes, which keeps ETags and caches stable),
 * XFL 0, OS 255 (unknown).
 */
export const GZIP_HEADER: Buffer = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff]);

/**
 * An empty final block with fixed Huffman codes: BFINAL=1, BTYPE=01, then the
 * 7-bit end-of-block code. Segments end byte-aligned (full flush), so this always
 * starts on a byte boundary.
 */
export const DEFLATE_END: Buffer = Buffer.from([0x03, 0x00]);

/**
 * The 8-byte gzip trailer.
 *
 * @param crc32 CRC-32 of the whole uncompressed content
 * @param size uncompressed length in bytes; stored modulo 2^32 as RFC 1952 says
 * @example
 * gzipTrailer(0, 0); // <Buffer 00 00 00 00 00 00 00 00>
 */
export function gzipTrailer(crc32: number, size: number): Buffer {
  if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`size must be a non-negative safe integer, got ${size}`);
  const trailer = Buffer.allocUnsafe(8);
  trailer.writeUInt32LE(crc32 >>> 0, 0);
  trailer.writeUInt32LE(size % 0x1_0000_0000, 4);
  return trailer;
}

/**
 * Exact byte length of the member, known before sending anything (Content-Length).
 *
 * @param segmentSizes compressed sizes of the segments, in bytes
 * @example
 * gzipMemberLength([]); // 20: header 10 + end block 2 + trailer 8
 */
export function gzipMemberLength(segmentSizes: Iterable<number>): number {
  let length = GZIP_HEADER.length + DEFLATE_END.length + 8;
  for (const size of segmentSizes) length += size;
  return length;
}

/**
 * CRC-32 of the concatenated content from the per-block CRCs, in order.
 *
 * @param parts each block's CRC-32 and uncompressed size in bytes
 * @returns unsigned 32-bit CRC; 0 for no parts (the CRC of empty content)
 * @example
 * combineCrcs(segments); // === crc32(Buffer.concat(blocks))
 */
export function combineCrcs(parts: Iterable<{ crc32: number; size: number }>): number {
  let crc = 0;
  for (const part of parts) crc = crc32Combine(crc, part.crc32, part.size);
  return crc;
}
