// A BlobStore on an S3 bucket (AWS S3, MinIO, Ceph RGW, moto...). The only module that imports
// the AWS SDK: every SDK error is translated here into BlobNotFoundError, BlobExistsError or
// BlobStoreError.
//
// Keys are object keys in the bucket as given (no prefix, no fan-out). Each put is one PutObject
// of a Buffer, which S3 applies atomically; conditional creates use `If-None-Match: *`, which S3
// (since 2024), MinIO and moto 5 honour. Nothing is cached: every call is one request (list: one
// per page).
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type BucketLocationConstraint,
} from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { BlobExistsError, BlobNotFoundError, BlobStoreError } from '../errors.js';
import { moduleLogger } from '../log.js';
import type { BlobInfo, BlobStore, PutOptions } from './blob-store.js';

const log = moduleLogger('blobs.s3');

export interface S3BlobStoreOptions {
  /** Bucket name. */
  bucket: string;
  /** Endpoint URL for S3-compatible servers, e.g. `http://127.0.0.1:9000`; AWS when unset. */
  endpoint?: string;
  /** Region; default `AWS_REGION` or `us-east-1`. */
  region?: string;
  /** Static credentials; the SDK's default chain (env, profile, IMDS...) when unset. */
  accessKeyId?: string;
  secretAccessKey?: string;
  /** Path-style URLs (`endpoint/bucket/key`), needed by most self-hosted servers. Default false. */
  forcePathStyle?: boolean;
  /** Concurrent connections to the endpoint; requests beyond it queue. Default 64. */
  maxSockets?: number;
  /** Keys per ListObjectsV2 page, at most 1000 (the default). Small values are for tests. */
  listPageSize?: number;
  /** Attempts per request, including the first (SDK standard retry). Default 3. */
  maxAttempts?: number;
  /** ms to establish a TCP/TLS connection before the attempt fails. Default 10_000. */
  connectionTimeoutMs?: number;
  /** ms a socket may stay idle mid-request before the attempt fails. Default 60_000. */
  socketTimeoutMs?: number;
}

/** Error names S3 and compatible servers use for a missing key. */
const MISSING_KEY = new Set(['NoSuchKey', 'NotFound']);
/** Error names for a failed `If-None-Match: *`: 412, and 409 while a concurrent create is in flight. */
const KEY_EXISTS = new Set(['PreconditionFailed', 'ConditionalRequestConflict']);

/**
 * Stores blobs as objects in one S3 bucket.
 *
 * @example
 * const store = new S3BlobStore({ bucket: 'blobs', endpoint: 'http://minio:9000', forcePathStyle: true });
 * await store.createBucketIfMissing();
 * await store.put('maps/' + sha256hex, data, { ifNoneMatch: true });
 */
export class S3BlobStore implements BlobStore {
  readonly describe: string;
  readonly bucket: string;
  private readonly client: S3Client;
  private readonly region: string;
  private readonly listPageSize: number;

  constructor(opts: S3BlobStoreOptions) {
    const maxSockets = opts.maxSockets ?? 64;
    this.bucket = opts.bucket;
    this.region = opts.region ?? process.env.AWS_REGION ?? 'us-east-1';
    this.listPageSize = Math.min(Math.max(1, opts.listPageSize ?? 1000), 1000);
    this.describe = `s3://${opts.bucket}${opts.endpoint ? ` (${opts.endpoint})` : ''}`;
    const credentials =
      opts.accessKeyId !== undefined && opts.secretAccessKey !== undefined
        ? { accessKeyId: opts.accessKeyId, secretAccessKey: opts.secretAccessKey }
        : undefined;
    this.client = new S3Client({
      endpoint: opts.endpoint,
      region: this.region,
      credentials,
      forcePathStyle: opts.forcePathStyle ?? false,
      maxAttempts: opts.maxAttempts ?? 3,
      // The SDK's default CRC32 checksum headers (since 3.729) are rejected by several
      // S3-compatible servers; send and check them only where an operation requires them.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: new NodeHttpHandler({
        httpAgent: new HttpAgent({ keepAlive: true, maxSockets }),
        httpsAgent: new HttpsAgent({ keepAlive: true, maxSockets }),
        connectionTimeout: opts.connectionTimeoutMs ?? 10_000,
        socketTimeout: opts.socketTimeoutMs ?? 60_000,
      }),
    });
  }

  async put(key: string, data: Buffer, options: PutOptions = {}): Promise<void> {
    const { signal } = options;
    try {
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Body: data,
          ContentLength: data.length,
          IfNoneMatch: options.ifNoneMatch ? '*' : undefined,
        }),
        { abortSignal: signal },
      );
    } catch (err) {
      if (options.ifNoneMatch && KEY_EXISTS.has(errorName(err))) throw new BlobExistsError(key, { cause: err });
      throw this.translate(err, `put ${key}`, signal);
    }
  }

  async get(key: string, signal?: AbortSignal): Promise<Buffer> {
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }), {
        abortSignal: signal,
      });
      if (!out.Body) return Buffer.alloc(0);
      const bytes = await out.Body.transformToByteArray();
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    } catch (err) {
      if (MISSING_KEY.has(errorName(err))) throw new BlobNotFoundError(key, { cause: err });
      throw this.translate(err, `get ${key}`, signal);
    }
  }

  async getRange(key: string, offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    const pieces: Buffer[] = [];
    for await (const piece of this.rangePieces(key, offset, length, signal)) pieces.push(piece);
    return pieces.length === 1 ? pieces[0] : Buffer.concat(pieces, length);
  }

  async *rangePieces(key: string, offset: number, length: number, signal?: AbortSignal): AsyncGenerator<Buffer> {
    if (length === 0) return;
    let body: AsyncIterable<Uint8Array> | undefined;
    try {
      const out = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: `bytes=${offset}-${offset + length - 1}` }),
        { abortSignal: signal },
      );
      body = out.Body as AsyncIterable<Uint8Array> | undefined;
    } catch (err) {
      if (MISSING_KEY.has(errorName(err))) throw new BlobNotFoundError(key, { cause: err });
      // 416: the range starts at or past the end of the object.
      throw this.translate(err, `get ${key} bytes ${offset}+${length}`, signal);
    }
    // The body's chunks as they came: the SDK's collector zero-filled a new array and copied
    // them into it, a fifth of a large GET's CPU and much of its GC.
    let got = 0;
    try {
      for await (const chunk of body ?? []) {
        got += chunk.byteLength;
        if (got > length) break;
        yield Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      }
    } catch (err) {
      throw this.translate(err, `get ${key} bytes ${offset}+${length}`, signal);
    }
    if (got !== length) {
      throw new BlobStoreError(`${this.describe}: ${key} ${got < length ? 'ends inside' : 'is longer than'} bytes ${offset}+${length} (got ${got})`);
    }
  }

  async head(key: string, signal?: AbortSignal): Promise<BlobInfo | null> {
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }), {
        abortSignal: signal,
      });
      return { key, size: out.ContentLength ?? 0, lastModified: out.LastModified ?? new Date(0) };
    } catch (err) {
      // A HEAD response has no body, so a missing bucket also looks like NotFound here.
      if (MISSING_KEY.has(errorName(err))) return null;
      throw this.translate(err, `head ${key}`, signal);
    }
  }

  async delete(key: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
    } catch (err) {
      // S3 answers 204 for an absent key; some compatible servers answer NoSuchKey.
      if (MISSING_KEY.has(errorName(err))) return;
      throw this.translate(err, `delete ${key}`);
    }
  }

  async *list(prefix: string): AsyncIterable<BlobInfo> {
    let token: string | undefined;
    do {
      let page;
      try {
        page = await this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: prefix,
            ContinuationToken: token,
            MaxKeys: this.listPageSize,
          }),
        );
      } catch (err) {
        throw this.translate(err, `list ${prefix}`);
      }
      for (const obj of page.Contents ?? []) {
        if (obj.Key === undefined) continue;
        yield { key: obj.Key, size: obj.Size ?? 0, lastModified: obj.LastModified ?? new Date(0) };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async ping(signal?: AbortSignal): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }), { abortSignal: signal });
    } catch (err) {
      throw this.translate(err, 'ping (HeadBucket)', signal);
    }
  }

  /** Creates the bucket unless it exists; for tests and embedded setups. Safe to race. */
  async createBucketIfMissing(signal?: AbortSignal): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }), { abortSignal: signal });
      return;
    } catch (err) {
      if (errorName(err) !== 'NotFound' && errorName(err) !== 'NoSuchBucket') {
        throw this.translate(err, 'HeadBucket', signal);
      }
    }
    try {
      await this.client.send(
        new CreateBucketCommand({
          Bucket: this.bucket,
          // us-east-1 is the one region that must not be named here.
          CreateBucketConfiguration:
            this.region === 'us-east-1'
              ? undefined
              : { LocationConstraint: this.region as BucketLocationConstraint },
        }),
        { abortSignal: signal },
      );
      log.info({ bucket: this.bucket }, 'created bucket');
    } catch (err) {
      if (errorName(err) === 'BucketAlreadyOwnedByYou') return;
      throw this.translate(err, 'CreateBucket', signal);
    }
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  private translate(err: unknown, what: string, signal?: AbortSignal): unknown {
    // A cancelled call rejects with the caller's reason, not as a backend failure.
    if (signal?.aborted) return signal.reason;
    const name = errorName(err);
    const status = (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode;
    const code = (err as { code?: unknown } | null)?.code;
    const detail = err instanceof Error ? err.message : String(err);
    const tags = [name, status, typeof code === 'string' ? code : undefined].filter((t) => t !== undefined && t !== '');
    log.debug({ err, op: what }, 's3 request failed');
    return new BlobStoreError(`${this.describe}: ${what} failed (${tags.join(' ')}): ${detail}`, { cause: err });
  }
}

/** Creates the store's bucket unless it exists. */
export async function ensureBucket(store: S3BlobStore): Promise<void> {
  await store.createBucketIfMissing();
}

function errorName(err: unknown): string {
  const name = (err as { name?: unknown } | null)?.name;
  return typeof name === 'string' ? name : '';
}
