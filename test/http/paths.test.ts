// Filetracker paths taken from the raw request URL: decoding and the rules that make a 400.
import { describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors.js';
import { MAX_PATH_BYTES, decodeDirPath, decodeFilePath } from '../../src/http/paths.js';

/** The AppError `fn` throws; fails the test when it throws anything else or nothing. */
function appErrorOf(fn: () => unknown): AppError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    return err as AppError;
  }
  throw new Error('expected an AppError, nothing was thrown');
}

const enc = (p: string) => p.split('/').map(encodeURIComponent).join('/');

describe.each([
  ['decodeFilePath', decodeFilePath],
  ['decodeDirPath', decodeDirPath],
] as const)('%s', (_name, decode) => {
  it('percent-decodes UTF-8 and strips exactly one leading slash', () => {
    expect(decode('a/b.txt')).toBe('a/b.txt');
    expect(decode('/a/b.txt')).toBe('a/b.txt');
    expect(decode('dir%20with%20space/f%2Bg')).toBe('dir with space/f+g');
    expect(decode('a+b')).toBe('a+b'); // a path is not form-encoded
  });

  it('drops one trailing slash', () => {
    expect(decode('a/b/')).toBe('a/b');
    expect(decode('/a/')).toBe('a');
  });

  it('keeps unicode names, encoded or raw', () => {
    const name = 'zażółć/gęślą jaźń/😀/ｆｕｌｌ.txt';
    expect(decode(enc(name))).toBe(name);
    expect(decode(name)).toBe(name);
  });

  it('rejects ".." segments, also when percent-encoded', () => {
    for (const raw of ['..', 'a/..', '../a', 'a/../b', '/a/../b', '%2e%2e/x', 'a/%2E%2E', 'a%2F..%2Fb']) {
      const err = appErrorOf(() => decode(raw));
      expect(err.status, raw).toBe(400);
      expect(err.code).toBe('BAD_PATH');
    }
    // '..' inside a name is just a name.
    expect(decode('a/..b/c..')).toBe('a/..b/c..');
  });

  it('rejects empty segments ("//")', () => {
    for (const raw of ['a//b', '//a', '/a//', 'a/%2F/b', 'a%2F%2Fb']) {
      const err = appErrorOf(() => decode(raw));
      expect(err.status, raw).toBe(400);
      expect(err.code).toBe('BAD_PATH');
    }
  });

  it('rejects NUL', () => {
    for (const raw of ['a%00b', '%00', 'dir/%00/x']) {
      const err = appErrorOf(() => decode(raw));
      expect(err.status, raw).toBe(400);
      expect(err.message).toMatch(/NUL/);
    }
  });

  it('rejects bad percent-encoding and invalid UTF-8', () => {
    for (const raw of ['%', 'a%2', '%zz', '%C3', '%C3%28', '%FF', '%ED%A0%80', 'a/%E2%82']) {
      const err = appErrorOf(() => decode(raw));
      expect(err.status, raw).toBe(400);
      expect(err.code).toBe('BAD_PATH');
    }
  });

  it(`accepts ${MAX_PATH_BYTES} UTF-8 bytes and rejects one more`, () => {
    expect(MAX_PATH_BYTES).toBe(4096);
    const ascii = 'd/' + 'x'.repeat(MAX_PATH_BYTES - 2);
    expect(decode(ascii)).toBe(ascii);
    expect(appErrorOf(() => decode(ascii + 'y')).status).toBe(400);
    // Counted in bytes, not characters: 2048 two-byte letters fit, 2049 do not.
    const wide = 'ż'.repeat(MAX_PATH_BYTES / 2);
    expect(decode(enc(wide))).toBe(wide);
    const err = appErrorOf(() => decode(enc(wide + 'ż')));
    expect(err.status).toBe(400);
    expect(err.message).toMatch(/longer than 4096 bytes/);
    // The stripped leading and trailing slashes do not count.
    expect(decode(`/${ascii}/`)).toBe(ascii);
  });
});

describe('decodeFilePath', () => {
  it('requires a path', () => {
    for (const raw of ['', '/', '//']) {
      const err = appErrorOf(() => decodeFilePath(raw));
      expect(err.status, JSON.stringify(raw)).toBe(400);
      expect(err.code).toBe('BAD_PATH');
    }
  });
});

describe('decodeDirPath', () => {
  it('answers "" for the root, with or without slashes', () => {
    expect(decodeDirPath('')).toBe('');
    expect(decodeDirPath('/')).toBe('');
    expect(decodeDirPath('//')).toBe('');
  });
});
