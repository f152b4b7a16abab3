// A one-request HTTP client for large files, run as its own process (node --import tsx) so it
// does not share an event loop with the bench or the server. Prints one JSON line.
//   PUT: streams a file with an exact Content-Length.
//   GET: reads the body and discards it (timed), or with verify, gunzips and hashes it.
// usage: bigclient.ts '<json BigRequest>'
import { createHash } from 'node:crypto';
import { createReadStream, statSync } from 'node:fs';
import { request } from 'node:http';
import { pathToFileURL } from 'node:url';
import { createGunzip } from 'node:zlib';

export interface BigRequest {
  op: 'PUT' | 'GET';
  url: string;
  headers: Record<string, string>;
  /** PUT: the body */
  file?: string;
  /** GET: gunzip (when gzip) and SHA-256 the body instead of discarding it */
  verify?: 'gzip' | 'raw';
  timeoutMs: number;
}

export interface BigResult {
  status: number;
  /** bytes on the wire (request body for PUT, response body for GET) */
  wireBytes: number;
  ms: number;
  sha256?: string;
  logicalBytes?: number;
  error?: string;
  body?: string;
}

/** Throws unless `url` is plain HTTP to a loopback address: the bench sends nothing anywhere else. */
export function assertLoopback(url: string): void {
  if (!/^http:\/\/(127\.\d+\.\d+\.\d+|localhost)[:/]/.test(url)) throw new Error(`loopback only: ${url}`);
}

function main(req: BigRequest): Promise<BigResult> {
  assertLoopback(req.url);
  return new Promise((resolve) => {
    const start = performance.now();
    const headers = { ...req.headers };
    const bodySize = req.op === 'PUT' ? statSync(req.file!).size : 0;
    if (req.op === 'PUT') headers['Content-Length'] = String(bodySize);
    const r = request(req.url, { method: req.op, headers, agent: false }, (res) => {
      let wire = 0;
      let logical = 0;
      const hash = createHash('sha256');
      const text: Buffer[] = [];
      const finish = (error?: string) =>
        resolve({
          status: res.statusCode ?? 0,
          wireBytes: req.op === 'PUT' ? bodySize : wire,
          ms: performance.now() - start,
          sha256: req.verify ? hash.digest('hex') : undefined,
          logicalBytes: req.verify ? logical : undefined,
          error,
          body: text.length ? Buffer.concat(text).toString().slice(0, 500) : undefined,
        });
      if (req.op === 'GET' && req.verify === 'gzip' && res.statusCode === 200) {
        const gunzip = createGunzip();
        res.on('data', (d: Buffer) => (wire += d.length));
        gunzip.on('data', (d: Buffer) => {
          logical += d.length;
          hash.update(d);
        });
        gunzip.on('end', () => finish());
        gunzip.on('error', (e) => finish(`gunzip: ${e.message}`));
        res.pipe(gunzip);
        return;
      }
      res.on('data', (d: Buffer) => {
        wire += d.length;
        if (req.verify === 'raw') {
          logical += d.length;
          hash.update(d);
        }
        if (res.statusCode !== 200 && text.length < 4) text.push(d);
      });
      res.on('end', () => finish());
      res.on('error', (e) => finish(e.message));
    });
    r.setTimeout(req.timeoutMs, () => r.destroy(new Error(`no progress for ${req.timeoutMs} ms`)));
    r.on('error', (e) => resolve({ status: 0, wireBytes: 0, ms: performance.now() - start, error: e.message }));
    if (req.op === 'PUT') createReadStream(req.file!, { highWaterMark: 1 << 20 }).pipe(r);
    else r.end();
  });
}

const isEntry = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
const arg = process.argv[2];
if (isEntry && arg) {
  main(JSON.parse(arg) as BigRequest).then(
    (res) => {
      process.stdout.write(`BIG_JSON ${JSON.stringify(res)}\n`);
      process.exit(0);
    },
    (err) => {
      process.stdout.write(`BIG_JSON ${JSON.stringify({ status: 0, wireBytes: 0, ms: 0, error: String(err) })}\n`);
      process.exit(0);
    },
  );
}
