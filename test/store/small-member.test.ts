// Whole-member contents: which gzip bodies are kept as they came, and what is stored.
import { crc32, gunzipSync, gzipSync, inflateRawSync } from 'node:zlib';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { GZIP_HEADER } from '../../src/store/gzip-member.js';
import { nativeDeflate } from '../../src/store/native-deflate.js';
import {
  deflateSmall,
  gzipHeaderLength,
  isWholeMember,
  libdeflateExactInflater,
  readSingleMember as readWithDefault,
  wholeMember,
  zlibExactInflater,
  type ExactInflater,
} from '../../src/store/small-member.js';

const text = Buffer.from('Filetracker test input line\n'.repeat(150));

/** A gzip member with the optional header fields the flags name (as Python's gzip writes FNAME). */
function withHeaderFields(body: Buffer, fields: { extra?: Buffer; name?: string; comment?: string; hcrc?: boolean }): Buffer {
  const header = Buffer.from(body.subarray(0, 10));
  const parts: Buffer[] = [];
  let flags = 0;
  if (fields.extra) {
    flags |= 0x04;
    const len = Buffer.alloc(2);
    len.writeUInt16LE(fields.extra.length);
    parts.push(len, fields.extra);
  }
  if (fields.name !== undefined) {
    flags |= 0x08;
    parts.push(Buffer.from(fields.name + '\0', 'latin1'));
  }
  if (fields.comment !== undefined) {
    flags |= 0x10;
    parts.push(Buffer.from(fields.comment + '\0', 'latin1'));
  }
  if (fields.hcrc) {
    flags |= 0x02;
    parts.push(Buffer.alloc(2)); // not checked by decoders that skip it; ours skips it too
  }
  header[3] = flags;
  return Buffer.concat([header, ...parts, body.subarray(10)]);
}

describe('gzipHeaderLength', () => {
  it('measures the header with each optional field, and refuses what is not a gzip header', () => {
    const gz = gzipSync(text);
    expect(gzipHeaderLength(gz)).toBe(10);
    expect(gzipHeaderLength(withHeaderFields(gz, { name: 'input.txt' }))).toBe(10 + 10);
    expect(gzipHeaderLength(withHeaderFields(gz, { extra: Buffer.from('abcd'), name: 'n', comment: 'cc', hcrc: true }))).toBe(10 + 6 + 2 + 3 + 2);
    expect(gzipHeaderLength(Buffer.from('not gzip at all'))).toBeNull();
    const reserved = Buffer.from(gz);
    reserved[3] = 0x20;
    expect(gzipHeaderLength(reserved)).toBeNull();
    expect(gzipHeaderLength(withHeaderFields(gz, { name: 'x' }).subarray(0, 11))).toBeNull(); // name never ends
  });
});

// test/store/segment.test.ts fails when the addon is not built; here both inflaters run either way.
const inflaters: [string, ExactInflater][] = [
  ['libdeflate', nativeDeflate ? libdeflateExactInflater(nativeDeflate) : zlibExactInflater],
  ['zlib', zlibExactInflater],
];

describe.each(inflaters)('readSingleMember with %s', (_name, inflater) => {
  const readSingleMember = (body: Buffer, maxContent: number) => readWithDefault(body, maxContent, inflater);

  it("keeps a single member's own deflate stream, whatever its header carries", () => {
    for (const body of [gzipSync(text, { level: 9 }), withHeaderFields(gzipSync(text, { level: 1 }), { name: '/home/someone/secret.txt' })]) {
      const got = readSingleMember(body, 32_768);
      expect(got).not.toBeNull();
      if (got === null) continue;
      expect(got.content.equals(text)).toBe(true);
      expect(got.crc32).toBe(crc32(text));
      expect(got.deflate.equals(body.subarray(gzipHeaderLength(body)!, body.length - 8))).toBe(true);
      // What is stored carries our header, not the client's (no file name handed on).
      const member = wholeMember(got.deflate, got.crc32, got.content.length);
      expect(member.subarray(0, 10).equals(GZIP_HEADER)).toBe(true);
      expect(gunzipSync(member).equals(text)).toBe(true);
    }
  });

  it('refuses two members, bytes between the stream and the trailer, and a wrong trailer', () => {
    const gz = gzipSync(text);
    // An empty first member: the last trailer then matches the whole content, the stream does not end there.
    expect(readSingleMember(Buffer.concat([gzipSync(Buffer.alloc(0)), gz]), 32_768)).toBeNull();
    const trailer = gz.subarray(gz.length - 8);
    expect(readSingleMember(Buffer.concat([gz.subarray(0, gz.length - 8), Buffer.from('junk'), trailer]), 32_768)).toBeNull();
    expect(readSingleMember(Buffer.concat([gz, Buffer.from('trailing garbage')]), 32_768)).toBeNull();
    const badCrc = Buffer.from(gz);
    badCrc[badCrc.length - 8] ^= 0xff;
    expect(readSingleMember(badCrc, 32_768)).toBeNull();
    expect(readSingleMember(gz.subarray(0, gz.length - 3), 32_768)).toBeNull(); // truncated
    // A trailer that gives the wrong size, smaller or larger than the content.
    for (const size of [text.length - 1, text.length + 1, 0]) {
      const wrongSize = Buffer.from(gz);
      wrongSize.writeUInt32LE(size, wrongSize.length - 4);
      expect(readSingleMember(wrongSize, 32_768)).toBeNull();
    }
    // A stream that is not deflate at all (BTYPE 11 is invalid), with a plausible trailer.
    const garbage = Buffer.concat([gz.subarray(0, 10), Buffer.from([0xff, 0xff, 0xff, 0xff]), trailer]);
    expect(readSingleMember(garbage, 32_768)).toBeNull();
  });

  it('reads an empty content and one of exactly the limit', () => {
    const empty = readSingleMember(gzipSync(Buffer.alloc(0)), 32_768);
    expect(empty?.content.length).toBe(0);
    const full = randomBytes(32_768);
    const got = readSingleMember(gzipSync(full), 32_768);
    expect(got?.content.equals(full)).toBe(true);
  });

  it('refuses a content past the limit, from the trailer, without inflating it', () => {
    const calls: number[] = [];
    const counting: ExactInflater = (deflate, size) => (calls.push(size), inflater(deflate, size));
    expect(readWithDefault(gzipSync(Buffer.alloc(100_000, 'a')), 32_768, counting)).toBeNull();
    expect(readWithDefault(gzipSync(Buffer.alloc(32_769, 'a')), 32_768, counting)).toBeNull();
    expect(calls).toEqual([]);
  });
});

describe.each([
  ['libdeflate', nativeDeflate],
  ['zlib', null],
])('deflateSmall with %s', (_name, addon) => {
  it('deflates text and stores random bytes, both as complete streams', () => {
    const random = randomBytes(20_000);
    for (const content of [text, random, Buffer.from('x'), Buffer.from('short text, under 64 bytes')]) {
      const deflate = deflateSmall(content, 6, addon);
      // A complete stream: zlib's strict inflate reads it to its final block, and nothing is left over.
      expect(inflateRawSync(deflate).equals(content)).toBe(true);
      const member = wholeMember(deflate, crc32(content), content.length);
      expect(gunzipSync(member).equals(content)).toBe(true);
      // ...so readSingleMember keeps it as it is, as it would a client's.
      expect(readWithDefault(member, 32_768)?.deflate.equals(deflate)).toBe(true);
    }
    expect(deflateSmall(text, 6, addon).length).toBeLessThan(text.length / 4);
    expect(deflateSmall(random, 6, addon).length).toBeLessThanOrEqual(random.length + 16);
  });
});

describe('small members', () => {

  it('isWholeMember: no blocks and stored bytes; an empty content is not one', () => {
    expect(isWholeMember({ blockCount: 0, storedSize: 31 })).toBe(true);
    expect(isWholeMember({ blockCount: 0, storedSize: 0 })).toBe(false);
    expect(isWholeMember({ blockCount: 1, storedSize: 31 })).toBe(false);
  });
});
