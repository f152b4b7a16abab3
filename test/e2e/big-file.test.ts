// A 1 GiB file streamed through a real server process on the local-disk store: PUT and GET
// are byte-exact and the server's peak RSS stays under 300 MB (memory bounded by
// configuration, not by file size).
import { createHash, randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { date } from '../support/ft.js';
import { harnessEnv } from '../support/harness.js';
import { startServerProcess, type ServerProcess } from '../support/server-process.js';

const SIZE = 1 << 30; // 1 GiB
const PIECE = 1 << 20;
const RSS_LIMIT = 300 * 1000 * 1000;

/** 1 GiB of mixed data: mostly random, every 8th MiB highly compressible. */
function* content(): Generator<Buffer> {
  for (let off = 0, i = 0; off < SIZE; off += PIECE, i++) {
    yield i % 8 === 0 ? Buffer.alloc(PIECE, `line ${i} of compressible text\n`) : randomBytes(PIECE);
  }
}

describe('1 GiB streamed PUT and GET (local disk)', () => {
  let server: ServerProcess;
  beforeAll(async () => {
    server = await startServerProcess(await harnessEnv('local'));
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('round-trips byte-exact with bounded server memory', { timeout: 600_000 }, async () => {
    const sent = createHash('sha256');
    const body = Readable.from(
      (function* () {
        for (const piece of content()) {
          sent.update(piece);
          yield piece;
        }
      })(),
    );
    const putStatus = await new Promise<number>((resolve, reject) => {
      const req = request(`${server.url}/ft/files/big/one-gib.bin`, {
        method: 'PUT',
        headers: { 'Content-Length': String(SIZE), 'Last-Modified': date(1_700_000_000) },
      });
      req.on('response', (res) => {
        res.resume();
        resolve(res.statusCode!);
      });
      req.on('error', reject);
      body.pipe(req);
    });
    expect(putStatus).toBe(200);
    const expected = sent.digest('hex');

    const received = createHash('sha256');
    let logical = 0;
    let wire = 0;
    let contentLength = -1;
    let logicalHeader = '';
    await new Promise<void>((resolve, reject) => {
      request(`${server.url}/ft/files/big/one-gib.bin`, (res) => {
        contentLength = Number(res.headers['content-length']);
        logicalHeader = String(res.headers['logical-size']);
        res.on('data', (d: Buffer) => (wire += d.length));
        pipeline(res, createGunzip(), async function (source: AsyncIterable<Buffer>) {
          for await (const d of source) {
            received.update(d);
            logical += d.length;
          }
        }).then(resolve, reject);
      })
        .on('error', reject)
        .end();
    });
    expect(logical).toBe(SIZE);
    expect(logicalHeader).toBe(String(SIZE));
    expect(wire).toBe(contentLength);
    expect(received.digest('hex')).toBe(expected);
    const peak = server.peakRss();
    console.log(`server peak RSS ${(peak / 1e6).toFixed(1)} MB over a 1 GiB PUT+GET`);
    expect(peak).toBeLessThan(RSS_LIMIT);
  });
});
