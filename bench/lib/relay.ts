// A bare HTTP relay in front of the S3 endpoint: every request is forwarded as it is (method,
// path, headers, body piped) and the answer piped back, with nothing else done to the bytes.
// It is the floor of any proxy written in Node on this machine: the one extra loopback hop (the
// relay receives each byte from the S3 endpoint and sends it again) that s3dedup's large GETs
// from S3 also pay, so the report can tell that hop's cost from s3dedup's own.
//
// Run as its own process: `node --import tsx relay.ts <port> <upstream origin>`; started and
// stopped by startRelay().
import { request, createServer, Agent } from 'node:http';
import { pipeline } from 'node:stream';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { assertLoopback } from './bigclient.js';
import { answers, freePort, ROOT, spawnServer, stopChild } from './sys.js';

export interface Relay {
  url: string;
  pid: number;
  child: ChildProcess;
  stop(): Promise<void>;
}

function serve(port: number, upstream: URL): void {
  assertLoopback(upstream.href);
  const agent = new Agent({ keepAlive: true });
  createServer((req, res) => {
    const up = request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers, agent },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        pipeline(upRes, res, () => {});
      },
    );
    up.on('error', () => res.destroy());
    pipeline(req, up, () => {});
  }).listen(port, '127.0.0.1');
}

export async function startRelay(upstream: string, logDir: string): Promise<Relay> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = await spawnServer('relay', process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), String(port), upstream], {
    cwd: ROOT,
    logPath: join(logDir, `relay-${port}.log`),
    ready: () => answers(`${url}/`),
  });
  return { url, pid: child.pid!, child, stop: () => stopChild(child, 5000) };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  serve(Number(process.argv[2]), new URL(process.argv[3]));
}
