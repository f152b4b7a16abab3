// .env.example documents every variable the server reads, with the default loadConfig uses.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ENV_VARS, loadConfig } from '../../src/config/config.js';

const text = readFileSync(fileURLToPath(new URL('../../.env.example', import.meta.url)), 'utf8');
/** `# NAME=value` lines: every variable is shown commented out. */
const shown = new Map(
  [...text.matchAll(/^# ([A-Z][A-Z0-9_]*)=(.*)$/gm)].map((m) => [m[1], m[2].replace(/^"(.*)"$/, '$1')] as const),
);

describe('.env.example', () => {
  it('lists every variable of ENV_VARS, and nothing else', () => {
    expect([...shown.keys()].sort()).toEqual(Object.keys(ENV_VARS).sort());
  });

  it('sets nothing when copied to .env as is', () => {
    expect(text).not.toMatch(/^[A-Z][A-Z0-9_]*=/m);
  });

  it('shows values that loadConfig accepts and that equal its defaults', () => {
    const defaults = loadConfig({ env: {} });
    // Examples, not defaults: there is no default S3 endpoint, credentials or migration source,
    // and BLOB_STORE's default depends on S3_ENDPOINT.
    const examples = new Set(['S3_ENDPOINT', 'S3_ACCESS_KEY', 'S3_SECRET_KEY', 'FILETRACKER_URL', 'FILETRACKER_V1_DIR', 'BLOB_STORE', 'POSTGRES_SCHEMA']);
    const env = Object.fromEntries([...shown].filter(([k, v]) => !examples.has(k) && v !== ''));
    expect(loadConfig({ env })).toEqual(defaults);
  });
});
