// An S3 endpoint for tests: $S3_ENDPOINT if set, else a MinIO container when Docker answers,
// else a moto_server child process. Fails loudly when none of them can be had.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  DeleteBucketCommand,
  DeleteObjectsCommand,
  ListObjectsV2Command,
  S3Client,
} from '@aws-sdk/client-s3';
import { S3BlobStore } from '../../src/blobs/s3.js';

export interface S3Endpoint {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  forcePathStyle: true;
  /** Stops the server if this process started it; a no-op for $S3_ENDPOINT. */
  stop(): Promise<void>;
}

/** The endpoint fields that can cross from globalSetup to the test workers. */
export type S3EndpointInfo = Omit<S3Endpoint, 'forcePathStyle' | 'stop'>;

const MINIO_IMAGE = process.env.MINIO_IMAGE ?? 'minio/minio';
/** ms to wait for the Docker engine to answer before trying moto. */
const DOCKER_PROBE_TIMEOUT_MS = 5_000;
/** ms to wait for moto_server to answer HTTP. */
const MOTO_START_TIMEOUT_MS = 30_000;

/**
 * Starts (or finds) an S3 endpoint.
 *
 * @example
 * const ep = await startS3();
 * const bucket = await createTestBucket(ep);
 * ...
 * await ep.stop();
 */
export async function startS3(): Promise<S3Endpoint> {
  const fromEnv = process.env.S3_ENDPOINT;
  if (fromEnv) {
    return {
      endpoint: fromEnv,
      region: process.env.S3_REGION ?? 'us-east-1',
      accessKeyId: process.env.S3_ACCESS_KEY ?? 'test',
      secretAccessKey: process.env.S3_SECRET_KEY ?? 'test',
      forcePathStyle: true,
      stop: async () => undefined,
    };
  }

  const failures: string[] = [];
  const docker = await probeDocker();
  if (docker === true) {
    try {
      return await startMinio();
    } catch (err) {
      failures.push(`MinIO container (${MINIO_IMAGE}) failed to start: ${message(err)}`);
      console.warn(`[test/support/s3] ${failures.at(-1)}; trying moto_server`);
    }
  } else {
    failures.push(`no Docker engine: ${docker}`);
  }

  try {
    return await startMoto();
  } catch (err) {
    failures.push(`moto_server: ${message(err)}`);
  }
  throw new Error(
    'No S3 endpoint for tests. Set S3_ENDPOINT (with S3_ACCESS_KEY, S3_SECRET_KEY, S3_REGION), ' +
      'run a Docker engine (for a minio/minio container), or put moto_server on PATH ' +
      `(pip install 'moto[server]'). Tried:\n  - env S3_ENDPOINT: not set\n  - ${failures.join('\n  - ')}`,
  );
}

/**
 * Creates a bucket with a unique name on the endpoint and returns the name.
 *
 * @example
 * const bucket = await createTestBucket(ep, 'gc'); // "gc-lx2k3a-9f1c2e4b"
 */
export async function createTestBucket(ep: S3EndpointInfo, prefix = 'test'): Promise<string> {
  const clean = prefix.toLowerCase().replace(/[^a-z0-9-]/g, '-').slice(0, 30) || 'test';
  const bucket = `${clean}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
  const store = new S3BlobStore({ ...ep, bucket, forcePathStyle: true });
  try {
    await store.createBucketIfMissing();
  } finally {
    await store.close();
  }
  return bucket;
}

/** Empties and deletes a test bucket; for afterEach/afterAll against a shared endpoint. */
export async function deleteTestBucket(ep: S3EndpointInfo, bucket: string): Promise<void> {
  const client = new S3Client({
    endpoint: ep.endpoint,
    region: ep.region,
    credentials: { accessKeyId: ep.accessKeyId, secretAccessKey: ep.secretAccessKey },
    forcePathStyle: true,
  });
  try {
    let token: string | undefined;
    do {
      const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
      const keys = (page.Contents ?? []).flatMap((o) => (o.Key === undefined ? [] : [{ Key: o.Key }]));
      if (keys.length > 0) {
        await client.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys, Quiet: true } }));
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    await client.send(new DeleteBucketCommand({ Bucket: bucket }));
  } finally {
    client.destroy();
  }
}

/** true, or why no Docker engine could be reached. */
export async function probeDocker(): Promise<true | string> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${DOCKER_PROBE_TIMEOUT_MS} ms`)), DOCKER_PROBE_TIMEOUT_MS);
    });
    await Promise.race([getContainerRuntimeClient(), timeout]);
    return true;
  } catch (err) {
    return message(err);
  } finally {
    clearTimeout(timer);
  }
}

async function startMinio(): Promise<S3Endpoint> {
  const { GenericContainer, Wait } = await import('testcontainers');
  const user = 'minioadmin';
  const password = 'minioadmin';
  const container = await new GenericContainer(MINIO_IMAGE)
    .withCommand(['server', '/data'])
    .withEnvironment({ MINIO_ROOT_USER: user, MINIO_ROOT_PASSWORD: password })
    .withExposedPorts(9000)
    .withWaitStrategy(Wait.forHttp('/minio/health/live', 9000))
    .withStartupTimeout(120_000)
    .start();
  return {
    endpoint: `http://${container.getHost()}:${container.getMappedPort(9000)}`,
    region: 'us-east-1',
    accessKeyId: user,
    secretAccessKey: password,
    forcePathStyle: true,
    stop: async () => {
      await container.stop();
    },
  };
}

async function startMoto(): Promise<S3Endpoint> {
  // Another process may take the free port between our probe and moto's bind; try again then.
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    try {
      const child = await spawnMoto(port);
      return {
        endpoint: `http://127.0.0.1:${port}`,
        region: 'us-east-1',
        accessKeyId: 'test',
        secretAccessKey: 'test',
        forcePathStyle: true,
        stop: () => stopChild(child),
      };
    } catch (err) {
      lastError = err;
      if ((err as { code?: string }).code === 'ENOENT') break;
    }
  }
  throw lastError;
}

async function spawnMoto(port: number): Promise<ChildProcess> {
  const child = spawn('moto_server', ['-H', '127.0.0.1', '-p', String(port)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // moto logs every request; keep draining the pipes (a full pipe would block it) and keep the
  // tail for error messages.
  let output = '';
  const keep = (chunk: Buffer): void => {
    output = (output + chunk.toString()).slice(-4000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const killOnExit = (): void => {
    child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);
  child.once('exit', () => process.off('exit', killOnExit));

  let failure: Error | undefined;
  child.once('error', (err) => {
    failure = Object.assign(new Error(`could not run moto_server: ${err.message}`), {
      code: (err as { code?: string }).code,
    });
  });
  child.once('exit', (code, sig) => {
    failure ??= new Error(`moto_server exited (${code ?? sig}) before answering: ${output.trim()}`);
  });

  const deadline = Date.now() + MOTO_START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (failure) throw failure;
    try {
      const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(1_000) });
      await res.arrayBuffer();
      return child;
    } catch {
      await sleep(100);
    }
  }
  await stopChild(child);
  throw new Error(`moto_server did not answer on port ${port} within ${MOTO_START_TIMEOUT_MS} ms: ${output.trim()}`);
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
