// moto_server (Python moto 5) on a free loopback port: the S3 endpoint for the S3 rows and for
// the direct-S3 baseline. moto does not verify signatures, so the baseline talks to it with plain
// HTTP and a dummy Authorization header: no signing or hashing cost on the client, which makes
// the baseline as fast as the endpoint allows and the proxy's overhead ratio conservative.
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { answers, freePort, spawnServer, stopChild, which } from './sys.js';

/** Headers moto accepts as an authenticated request without a signature check. */
export const S3_DUMMY_AUTH: Record<string, string> = {
  Authorization:
    'AWS4-HMAC-SHA256 Credential=bench/20240101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0000000000000000000000000000000000000000000000000000000000000000',
  'x-amz-content-sha256': 'UNSIGNED-PAYLOAD',
};

export interface Moto {
  endpoint: string;
  port: number;
  pid: number;
  child: ChildProcess;
  createBucket(name: string): Promise<void>;
  stop(): Promise<void>;
}

export async function startMoto(logDir: string): Promise<Moto> {
  if (!(await which('moto_server'))) {
    throw new Error("moto_server is not on the PATH: install it with `pip install 'moto[server]'` (Python moto 5)");
  }
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  const child = await spawnServer('moto_server', 'moto_server', ['-H', '127.0.0.1', '-p', String(port)], {
    logPath: join(logDir, `moto-${port}.log`),
    ready: () => answers(`${endpoint}/`, 1000),
  });
  return {
    endpoint,
    port,
    pid: child.pid!,
    child,
    async createBucket(name: string) {
      const res = await fetch(`${endpoint}/${name}`, { method: 'PUT', headers: S3_DUMMY_AUTH });
      await res.arrayBuffer();
      if (!res.ok && res.status !== 409) throw new Error(`moto: creating bucket ${name} answered ${res.status}`);
    },
    stop: () => stopChild(child, 5000),
  };
}
