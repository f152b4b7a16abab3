// zlib's crc32_combine: the CRC-32 of A‖B from crc(A), crc(B) and len(B), so a GET never rereads the blocks.
//
// Port of the x^(2^n) method of zlib >= 1.2.12 (crc32.c: multmodp, x2nmodp). CRC values are
// polynomials over GF(2) in reflected bit order; appending len2 bytes to A multiplies crc(A) by
// x^(8 * len2) modulo the CRC polynomial, and crc(A‖B) = crc(A) * x^(8 * len2) + crc(B). The
// power is built from a table of x^(2^k), so the cost is O(log len2) products, not O(len2).

/** The CRC-32 polynomial, reflected. */
const POLY = 0xedb88320;

/** a * b modulo POLY, both in reflected order (bit 31 is x^0). Unsigned result. */
function multModP(a: number, b: number): number {
  if (a === 0) return 0; // zlib never passes 0 here; the guard keeps the loop below finite
  let m = 0x80000000;
  let p = 0;
  for (;;) {
    if ((a & m) !== 0) {
      p ^= b;
      if ((a & (m - 1)) === 0) break;
    }
    m >>>= 1;
    b = (b & 1) !== 0 ? (b >>> 1) ^ POLY : b >>> 1;
  }
  return p >>> 0;
}

/** X2N[k] = x^(2^k) mod POLY. The sequence has period 32 for this polynomial, as zlib relies on. */
const X2N: Uint32Array = (() => {
  const table = new Uint32Array(32);
  let p = 0x40000000; // x^1
  table[0] = p;
  for (let k = 1; k < 32; k++) table[k] = p = multModP(p, p);
  return table;
})();

/** x^(n * 2^k) mod POLY; n may exceed 2^32, hence division instead of shifts. */
function x2nModP(n: number, k: number): number {
  let p = 0x80000000; // x^0
  while (n > 0) {
    if (n % 2 === 1) p = multModP(X2N[k & 31], p);
    n = Math.floor(n / 2);
    k++;
  }
  return p;
}

/**
 * CRC-32 of the concatenation A‖B, given crc1 = crc32(A), crc2 = crc32(B) and len2 = B.length.
 *
 * @param crc1 CRC-32 of the first part (signed or unsigned 32-bit both accepted)
 * @param crc2 CRC-32 of the second part
 * @param len2 length of the second part in bytes, an integer 0 .. 2^53 - 1
 * @returns unsigned 32-bit CRC
 * @example
 * crc32Combine(crc32(a), crc32(b), b.length) === crc32(Buffer.concat([a, b])); // true
 */
export function crc32Combine(crc1: number, crc2: number, len2: number): number {
  if (!Number.isSafeInteger(len2) || len2 < 0) {
    throw new RangeError(`len2 must be a non-negative safe integer, got ${len2}`);
  }
  // k = 3: 8 * len2 bits, i.e. x^(len2 * 2^3).
  return (multModP(x2nModP(len2, 3), crc1 >>> 0) ^ (crc2 >>> 0)) >>> 0;
}
