// The descriptor's layout: new stores get layout 3, layout-1 and -2 stores are upgraded in place
// (so an older build refuses them afterwards), an unknown layout stops the start.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LocalBlobStore } from '../../src/blobs/local.js';
import { DEFAULT_CHUNKER } from '../../src/store/chunker.js';
import { describeStore, ensureDescriptor, LAYOUT } from '../../src/store/descriptor.js';
import { DESCRIPTOR_KEY } from '../../src/store/keys.js';

describe('ensureDescriptor layouts', () => {
  let dir: string;
  let blobs: LocalBlobStore;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 's3dedup-descriptor-'));
    blobs = new LocalBlobStore({ root: dir });
  });
  afterEach(async () => {
    await blobs.close();
    await rm(dir, { recursive: true, force: true });
  });

  const stored = async () => JSON.parse((await blobs.get(DESCRIPTOR_KEY)).toString('utf8'));

  it('writes layout 3 on a fresh store', async () => {
    expect(LAYOUT).toBe(3);
    expect((await ensureDescriptor(blobs, DEFAULT_CHUNKER)).layout).toBe(3);
    expect((await stored()).layout).toBe(3);
  });

  it.each([1, 2])('upgrades a layout-%i store to 3, keeping the rest of its descriptor', async (layout) => {
    const old = { ...describeStore(DEFAULT_CHUNKER), layout, createdAt: '2026-11-25T00:00:00.000Z' };
    await blobs.put(DESCRIPTOR_KEY, Buffer.from(JSON.stringify(old)));
    expect((await ensureDescriptor(blobs, DEFAULT_CHUNKER)).layout).toBe(3);
    expect(await stored()).toEqual({ ...old, layout: 3 });
  });

  it('refuses a layout it does not know', async () => {
    await blobs.put(DESCRIPTOR_KEY, Buffer.from(JSON.stringify({ ...describeStore(DEFAULT_CHUNKER), layout: 4 })));
    await expect(ensureDescriptor(blobs, DEFAULT_CHUNKER)).rejects.toThrow(/layout 4 \(expected 3\)/);
    expect((await stored()).layout).toBe(4);
  });
});
