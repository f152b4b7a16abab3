import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { resolveLocalLayout } from '../../src/blobs/local-layout.js';
import { PackedBlobStore } from '../../src/blobs/packed.js';
import { loadConfig } from '../../src/config/config.js';
import { openRuntime } from '../../src/runtime.js';

describe('local blob layout', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 's3dedup-layout-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('picks packs for a new directory and keeps what an existing one holds', async () => {
    expect(resolveLocalLayout(join(dir, 'absent'), 'auto')).toBe('packs');
    const files = join(dir, 'files');
    mkdirSync(files);
    writeFileSync(join(files, 's3dedup.json'), '{}');
    expect(resolveLocalLayout(files, 'auto')).toBe('files');
    const packs = join(dir, 'packs');
    await (await PackedBlobStore.open({ root: packs })).close();
    expect(resolveLocalLayout(packs, 'auto')).toBe('packs');
  });

  it('refuses a layout that contradicts the directory, saying what to set', async () => {
    const files = join(dir, 'files');
    mkdirSync(join(files, 'blocks'), { recursive: true });
    expect(() => resolveLocalLayout(files, 'packs')).toThrow(/LOCAL_LAYOUT=packs, but .* files layout; set LOCAL_LAYOUT=files or auto/);
    const packs = join(dir, 'packs');
    await (await PackedBlobStore.open({ root: packs })).close();
    expect(() => resolveLocalLayout(packs, 'files')).toThrow(/set LOCAL_LAYOUT=packs or auto/);
  });

  it('a store made with LOCAL_LAYOUT=files reopens in that layout under auto, with its files intact', async () => {
    const env = { DATA_DIR: dir, LOCAL_LAYOUT: 'files', CLEANER_ENABLED: 'false' };
    const first = await openRuntime(loadConfig({ env }));
    expect(first.blobs).not.toBeInstanceOf(PackedBlobStore);
    await first.blobs.put('maps/x', Buffer.from('kept'));
    await first.close();
    const again = await openRuntime(loadConfig({ env: { ...env, LOCAL_LAYOUT: 'auto' } }));
    try {
      expect(again.blobs).not.toBeInstanceOf(PackedBlobStore);
      expect((await again.blobs.get('maps/x')).toString()).toBe('kept');
    } finally {
      await again.close();
    }
    await expect(openRuntime(loadConfig({ env: { ...env, LOCAL_LAYOUT: 'packs' } }))).rejects.toThrow(/files layout/);
  });

  it('rejects an unknown LOCAL_LAYOUT with the allowed values', () => {
    expect(() => loadConfig({ env: { LOCAL_LAYOUT: 'tar' } })).toThrow(/LOCAL_LAYOUT/);
  });
});
