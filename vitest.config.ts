import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // One S3 endpoint (env, MinIO container or moto_server) for the whole run.
    globalSetup: ['test/support/global-setup.ts'],
    // bench/.cache holds compiled copies of the tree (the bench's builds, A/B experiments).
    exclude: [...configDefaults.exclude, 'bench/.cache/**'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Native modules (better-sqlite3) and child processes behave better in forks than threads.
    pool: 'forks',
    // In-process servers log at the level the test asks for; expected 5xx noise stays out.
    env: { LOG_LEVEL: process.env.LOG_LEVEL ?? 'silent' },
  },
});
