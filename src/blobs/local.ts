// A BlobStore on a local directory, for single-node setups and tests.
//
// Layout: a key `a/b/name` is the file `<root>/a/b/name`, except that a name that looks like a
// content hash (16 or more lowercase hex digits) is fanned out by its first two digits:
// `blocks/<sha256>` lives at `<root>/blocks/<2 hex>/<sha256>`, so no directory grows to millions
// of entries and list() never has to sort more than one fan-out directory at a time. To keep the
// mapping unambiguous a key segment may not be exactly two lowercase hex digits (that name is
// reserved for fan-out directories), `.` or `..`, or start with `.tmp-` (temporary files).
//
// Writes go to `.tmp-<token>-<n>` in the destination directory and are renamed into place (or, for
// ifNoneMatch, hard-linked, which fails atomically when the name exists), so readers never see a
// partial object. Directories are created on first use and never removed.
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants as fsConstants,
  fsyncSync,
  linkSync,
  open as openCallback,
  renameSync,
  rmSync,
  unlinkSync,
  writeFileSync,
  type Dirent,
} from 'node:fs';
import { access, link, mkdir, open, readFile, readdir, rename, stat, unlink } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { promisify } from 'node:util';
import { pathToFileURL } from 'node:url';
import { BlobExistsError, BlobNotFoundError, BlobStoreError } from '../errors.js';
import type { BlobInfo, BlobStore, PutOptions } from './blob-store.js';
import { errnoCode, toBlobStoreError } from './fs-errors.js';

export interface LocalBlobStoreOptions {
  /** Directory holding the objects; created on the first write. */
  root: string;
  /** fsync each object and its directory before a put resolves (durable, slower). Default false. */
  fsync?: boolean;
}

const TMP_PREFIX = '.tmp-';
/** A name fanned out into a subdirectory: a content hash or similar id. */
const FANNED_NAME = /^[0-9a-f]{16,}$/;
/** A fan-out directory name, reserved in keys. */
const FAN_DIR = /^[0-9a-f]{2}$/;
/** Objects up to this size are written mostly inline (SMALL_OPS). */
const SMALL_WRITE_BYTES = 65_536;
/** Temporary names: a token per process and a counter, unique without a random draw per put. */
const TMP_TOKEN = randomBytes(6).toString('hex');
let tmpCounter = 0;
/** How many stat() calls list() keeps in flight. */
const STAT_BATCH = 32;

/** Codes meaning "no object at this path": missing file, a file where a directory was expected. */
const ABSENT = new Set(['ENOENT', 'ENOTDIR', 'EISDIR']);

/**
 * Stores blobs as files under a directory.
 *
 * @example
 * const store = new LocalBlobStore({ root: '/var/lib/s3dedup/blobs', fsync: true });
 * await store.put('blocks/' + sha256hex, data, { ifNoneMatch: true });
 */
export class LocalBlobStore implements BlobStore {
  readonly describe: string;
  private readonly root: string;
  private readonly fsync: boolean;
  /** Directories known to exist, so a put does not mkdir on every call. */
  private readonly knownDirs = new Set<string>();

  constructor(opts: LocalBlobStoreOptions) {
    this.root = resolve(opts.root);
    this.fsync = opts.fsync ?? false;
    this.describe = pathToFileURL(this.root).href;
  }

  async put(key: string, data: Buffer, options: PutOptions = {}): Promise<void> {
    const path = this.pathOf(key);
    const signal = options.signal;
    signal?.throwIfAborted();
    const dir = dirname(path);
    const tmp = join(dir, `${TMP_PREFIX}${TMP_TOKEN}-${(tmpCounter++).toString(36)}`);
    // A small object without fsync takes one thread-pool round trip instead of four (SMALL_OPS).
    const fs = !this.fsync && data.length <= SMALL_WRITE_BYTES ? SMALL_OPS : ASYNC_OPS;
    let tmpWritten = false;
    try {
      await this.writeTemp(fs, dir, tmp, data);
      tmpWritten = true;
      // The last point at which a cancelled upload can still leave no trace.
      signal?.throwIfAborted();
      if (options.ifNoneMatch) {
        // link() fails with EEXIST if the name exists, so exactly one concurrent create wins;
        // rename() would silently replace the winner.
        try {
          await fs.link(tmp, path);
        } catch (err) {
          if (errnoCode(err) === 'EEXIST') throw new BlobExistsError(key, { cause: err });
          throw err;
        }
      } else {
        await fs.rename(tmp, path);
        tmpWritten = false;
      }
      if (this.fsync) await syncDir(dir);
    } catch (err) {
      throw this.translate(err, `put ${key}`, signal);
    } finally {
      if (tmpWritten) await fs.unlink(tmp).catch(() => undefined);
    }
  }

  async get(key: string, signal?: AbortSignal): Promise<Buffer> {
    const path = this.pathOf(key);
    try {
      return await readFile(path, { signal });
    } catch (err) {
      if (ABSENT.has(errnoCode(err) ?? '')) throw new BlobNotFoundError(key, { cause: err });
      throw this.translate(err, `get ${key}`, signal);
    }
  }

  async getRange(key: string, offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    const path = this.pathOf(key);
    signal?.throwIfAborted();
    let data: Buffer;
    try {
      const fh = await open(path, 'r');
      try {
        data = Buffer.allocUnsafeSlow(length);
        let got = 0;
        while (got < length) {
          const { bytesRead } = await fh.read(data, got, length - got, offset + got);
          if (bytesRead === 0) break;
          got += bytesRead;
        }
        if (got < length) data = data.subarray(0, got);
      } finally {
        await fh.close();
      }
    } catch (err) {
      if (ABSENT.has(errnoCode(err) ?? '')) throw new BlobNotFoundError(key, { cause: err });
      throw this.translate(err, `get ${key}`, signal);
    }
    if (data.length !== length) throw new BlobStoreError(`${this.describe}: ${key} ends inside bytes ${offset}+${length} (got ${data.length})`);
    return data;
  }

  async head(key: string, signal?: AbortSignal): Promise<BlobInfo | null> {
    const path = this.pathOf(key);
    signal?.throwIfAborted();
    try {
      const st = await stat(path);
      if (!st.isFile()) return null;
      return { key, size: st.size, lastModified: st.mtime };
    } catch (err) {
      if (ABSENT.has(errnoCode(err) ?? '')) return null;
      throw this.translate(err, `head ${key}`, signal);
    }
  }

  async delete(key: string): Promise<void> {
    const path = this.pathOf(key);
    try {
      await unlink(path);
    } catch (err) {
      if (ABSENT.has(errnoCode(err) ?? '')) return;
      throw this.translate(err, `delete ${key}`);
    }
  }

  async *list(prefix: string): AsyncIterable<BlobInfo> {
    if (prefix.startsWith('/')) throw new Error(`invalid blob key prefix: ${JSON.stringify(prefix)}`);
    // Start in the deepest directory the prefix fully names; the rest filters names in it.
    const cut = prefix.lastIndexOf('/');
    const dirKey = cut < 0 ? '' : prefix.slice(0, cut);
    const rest = prefix.slice(cut + 1);
    if (dirKey !== '') {
      const segments = dirKey.split('/');
      segments.forEach((s) => checkSegment(s, prefix));
      // No key has a reserved segment, and the directory would be a fan-out one.
      if (segments.some((s) => FAN_DIR.test(s))) return;
    }
    try {
      yield* this.walk(dirKey, rest);
    } catch (err) {
      throw this.translate(err, `list ${prefix}`);
    }
  }

  async ping(signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    try {
      const st = await stat(this.root);
      if (!st.isDirectory()) throw new BlobStoreError(`${this.describe} is not a directory`);
      await access(this.root, fsConstants.W_OK);
    } catch (err) {
      throw this.translate(err, 'ping', signal);
    }
  }

  async close(): Promise<void> {
    // Nothing is held open between calls.
  }

  /** The file path of a key; throws for keys that could escape the root or break the layout. */
  private pathOf(key: string): string {
    if (key === '' || key.startsWith('/')) throw new Error(`invalid blob key: ${JSON.stringify(key)}`);
    const segments = key.split('/');
    for (const s of segments) {
      checkSegment(s, key);
      if (FAN_DIR.test(s)) {
        throw new Error(`invalid blob key ${JSON.stringify(key)}: two-hex-digit segments are reserved`);
      }
    }
    const name = segments.pop() as string;
    if (FANNED_NAME.test(name)) segments.push(name.slice(0, 2));
    segments.push(name);
    return join(this.root, ...segments);
  }

  private async writeTemp(fs: FileOps, dir: string, tmp: string, data: Buffer): Promise<void> {
    if (!this.knownDirs.has(dir)) {
      await fs.mkdirp(dir);
      this.knownDirs.add(dir);
    }
    try {
      await fs.writeNew(tmp, data, this.fsync);
    } catch (err) {
      // The cached directory was removed behind our back: forget it and create it again.
      if (errnoCode(err) !== 'ENOENT') throw err;
      this.knownDirs.delete(dir);
      await fs.mkdirp(dir);
      this.knownDirs.add(dir);
      await fs.writeNew(tmp, data, this.fsync);
    }
  }

  /**
   * Yields the objects in logical directory dirKey whose name starts with rest, in key order.
   * Plain entries (files, and subdirectories sorted as `name/`) are merged with the names read
   * from fan-out directories, which are already ordered among themselves.
   */
  private async *walk(dirKey: string, rest: string): AsyncGenerator<BlobInfo> {
    const dirPath = dirKey === '' ? this.root : join(this.root, ...dirKey.split('/'));
    const keyOf = (name: string): string => (dirKey === '' ? name : `${dirKey}/${name}`);
    const entries = await readdirOrEmpty(dirPath);

    const plain: { sortName: string; entry: Dirent }[] = [];
    const fanDirs: string[] = [];
    for (const entry of entries) {
      const name = entry.name;
      if (name.startsWith(TMP_PREFIX)) continue;
      if (entry.isDirectory()) {
        if (FAN_DIR.test(name)) {
          if (rest.startsWith(name) || name.startsWith(rest)) fanDirs.push(name);
        } else if (`${name}/`.startsWith(rest) || rest.startsWith(`${name}/`)) {
          plain.push({ sortName: `${name}/`, entry });
        }
      } else if (entry.isFile()) {
        // A hash-named file outside its fan-out directory is unreachable by get(); skip it.
        if (!FANNED_NAME.test(name) && name.startsWith(rest)) plain.push({ sortName: name, entry });
      }
    }
    plain.sort((a, b) => compare(a.sortName, b.sortName));
    fanDirs.sort(compare);

    const fanned = this.fanned(dirPath, fanDirs, rest, keyOf)[Symbol.asyncIterator]();
    let next = await fanned.next();
    for (let i = 0; i < plain.length; ) {
      const item = plain[i];
      if (!next.done && compare(next.value.sortName, item.sortName) < 0) {
        yield next.value.info;
        next = await fanned.next();
        continue;
      }
      i += 1;
      if (item.entry.isDirectory()) {
        yield* this.walk(keyOf(item.entry.name), '');
      } else {
        const info = await statInfo(join(dirPath, item.entry.name), keyOf(item.entry.name));
        if (info) yield info;
      }
    }
    while (!next.done) {
      yield next.value.info;
      next = await fanned.next();
    }
  }

  /** The objects in the given fan-out directories of dirPath, in name order. */
  private async *fanned(
    dirPath: string,
    fanDirs: string[],
    rest: string,
    keyOf: (name: string) => string,
  ): AsyncGenerator<{ sortName: string; info: BlobInfo }> {
    for (const fan of fanDirs) {
      const fanPath = join(dirPath, fan);
      const names = (await readdirOrEmpty(fanPath))
        .filter((e) => e.isFile() && e.name.startsWith(fan) && FANNED_NAME.test(e.name) && e.name.startsWith(rest))
        .map((e) => e.name)
        .sort(compare);
      for (let i = 0; i < names.length; i += STAT_BATCH) {
        const batch = names.slice(i, i + STAT_BATCH);
        const infos = await Promise.all(batch.map((n) => statInfo(join(fanPath, n), keyOf(n))));
        for (let j = 0; j < batch.length; j++) {
          const info = infos[j];
          if (info) yield { sortName: batch[j], info };
        }
      }
    }
  }

  private translate(err: unknown, what: string, signal?: AbortSignal): unknown {
    return toBlobStoreError(err, this.describe, what, signal);
  }
}

function checkSegment(segment: string, key: string): void {
  if (segment === '' || segment === '.' || segment === '..' || segment.startsWith(TMP_PREFIX)) {
    throw new Error(`invalid blob key: ${JSON.stringify(key)}`);
  }
  if (segment.includes('\0') || segment.includes(sep)) {
    throw new Error(`invalid blob key: ${JSON.stringify(key)}`);
  }
}

/** Plain code-unit order, the order S3 lists keys in (for ASCII keys). */
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

async function readdirOrEmpty(path: string): Promise<Dirent[]> {
  try {
    return await readdir(path, { withFileTypes: true });
  } catch (err) {
    if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ENOTDIR') return [];
    throw err;
  }
}

/** Size and time of a file, or null when it vanished since readdir (a concurrent delete). */
async function statInfo(path: string, key: string): Promise<BlobInfo | null> {
  try {
    const st = await stat(path);
    return st.isFile() ? { key, size: st.size, lastModified: st.mtime } : null;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return null;
    throw err;
  }
}

/** The file-system calls put() makes, in two flavours. */
interface FileOps {
  mkdirp(dir: string): unknown;
  /** Creates `path` (failing if it exists) holding `data`; removes it again if the write fails. */
  writeNew(path: string, data: Buffer, fsync: boolean): unknown;
  link(from: string, to: string): unknown;
  rename(from: string, to: string): unknown;
  unlink(path: string): Promise<unknown>;
}

const ASYNC_OPS: FileOps = {
  mkdirp: (dir) => mkdir(dir, { recursive: true }),
  async writeNew(path, data, fsync) {
    const fh = await open(path, 'wx');
    try {
      await fh.writeFile(data);
      if (fsync) await fh.sync();
    } catch (err) {
      await fh.close().catch(() => undefined);
      await unlink(path).catch(() => undefined);
      throw err;
    }
    await fh.close();
  },
  link,
  rename,
  unlink,
};

const openFd = promisify(openCallback);

/**
 * For small objects: the file is created in the thread pool (allocating an inode cost up to
 * 1 ms of kernel CPU on the disks this was measured on, better spent beside the event loop),
 * and written, closed and renamed inline, which costs less than three more round trips.
 */
const SMALL_OPS: FileOps = {
  mkdirp: ASYNC_OPS.mkdirp,
  async writeNew(path, data, fsync) {
    const fd = await openFd(path, 'wx');
    try {
      writeFileSync(fd, data);
      if (fsync) fsyncSync(fd);
    } catch (err) {
      closeSync(fd);
      rmSync(path, { force: true });
      throw err;
    }
    closeSync(fd);
  },
  link: linkSync,
  rename: renameSync,
  unlink: async (path) => unlinkSync(path),
};

/** Makes a rename or link in dir durable. */
async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
