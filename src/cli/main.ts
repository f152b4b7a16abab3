#!/usr/bin/env -S node --no-concurrent-marking --max-semi-space-size=4
// The s3dedup command line: `server`, `cleanup`, `fsck`; the migration commands come later.
import cluster from 'node:cluster';
import { parseArgs } from 'node:util';
import { clusterMetrics, startPrimary, workerConfig, workerIndex } from '../cluster.js';
import { ConfigError, ENV_VARS, loadConfig } from '../config/config.js';
import { configureLogger } from '../log.js';
import { metrics } from '../metrics/metrics.js';
// The store, the HTTP server and fsck are imported by the commands that use them: a WORKERS
// primary loads none of them and stays a small process.

// Block writes, compression and gunzip share libuv's thread pool, whose default of 4 threads
// starves them; the pool starts on first use, which comes after this line.
process.env.UV_THREADPOOL_SIZE ??= '16';

const USAGE = `usage: s3dedup <command> [options]

commands:
  server        run the Filetracker v2 proxy (http://LISTEN_ADDRESS:LISTEN_PORT/ft), in WORKERS
                processes
  cleanup       run one cleaner pass (deletes unreferenced blocks and maps older than
                CLEANER_GRACE_SECONDS) and print what it deleted; exit 0, or 1 on an error
                (nothing more is deleted after an error; the next pass resumes)
  fsck          check reference counts, blobs and sizes against each other; exit 0 when clean,
                1 when a problem was found (or fsck could not finish), 2 on a usage error

options:
  -c, --config FILE   JSON config file (s3dedup format); environment variables override it
  -e, --env           configure from environment variables only (the default without -c)
      --repair        (fsck) rewrite wrong reference counts; nothing else is ever changed
      --full-scan     (cleanup) also delete objects the metadata does not know and rewrite
                      extents at most half live
  -h, --help          this help

environment:
${Object.entries(ENV_VARS).map(([k, v]) => `  ${k.padEnd(24)} ${v}`).join('\n')}
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '-h' || command === '--help' || command === 'help') {
    process.stdout.write(USAGE);
    return command ? 0 : 2;
  }
  const { values } = parseArgs({
    args: rest,
    options: {
      config: { type: 'string', short: 'c' },
      env: { type: 'boolean', short: 'e' },
      help: { type: 'boolean', short: 'h' },
      repair: { type: 'boolean' },
      'full-scan': { type: 'boolean' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (values.repair && command !== 'fsck') {
    process.stderr.write(`--repair is an option of fsck only\n\n${USAGE}`);
    return 2;
  }
  if (values['full-scan'] && command !== 'cleanup') {
    process.stderr.write(`--full-scan is an option of cleanup only\n\n${USAGE}`);
    return 2;
  }
  const config = loadConfig({ configFile: values.config });
  configureLogger({ level: config.logLevel, json: config.logJson });
  switch (command) {
    case 'server': {
      if (config.workers > 1 && cluster.isPrimary) {
        const primary = await startPrimary(config);
        const onSignal = () => primary.stop().then(() => process.exit(0));
        process.once('SIGTERM', onSignal);
        process.once('SIGINT', onSignal);
        return new Promise<number>(() => {}); // runs until a signal
      }
      const index = workerIndex();
      const { startServer } = await import('../server.js');
      const running =
        index === null
          ? await startServer(config)
          : await startServer(workerConfig(config, index), { metricsSource: clusterMetrics(metrics.registry) });
      const onSignal = () => {
        running.stop().then(
          () => process.exit(0),
          (err) => {
            process.stderr.write(`shutdown failed: ${(err as Error).message}\n`);
            process.exit(1);
          },
        );
      };
      process.once('SIGTERM', onSignal);
      process.once('SIGINT', onSignal);
      // A worker whose primary is gone (killed) stops too, instead of serving on unsupervised.
      if (index !== null) process.once('disconnect', onSignal);
      return new Promise<number>(() => {}); // runs until a signal
    }
    case 'cleanup': {
      const { openRuntime } = await import('../runtime.js');
      const runtime = await openRuntime(config);
      try {
        const report = await runtime.cleaner.run({ fullScan: values['full-scan'] ?? false });
        process.stdout.write(
          `cleanup: deleted ${report.maps} maps, ${report.blocks} blocks, ${report.extents} extents, ${report.orphans} unknown objects` +
            `${report.resumed ? `, finished ${report.resumed} interrupted deletions` : ''}` +
            `${report.extentsCompacted?.rewritten ? `, rewrote ${report.extentsCompacted.rewritten} mostly dead extents (${report.extentsCompacted.bytesRetired} bytes retired, ${report.extentsCompacted.bytesWritten} written)` : ''}` +
            ` in ${report.durationMs} ms\n`,
        );
        return 0;
      } finally {
        await runtime.close();
      }
    }
    case 'fsck': {
      const [{ openRuntime }, { formatFsckReport, runFsck }] = await Promise.all([import('../runtime.js'), import('../maintenance/fsck.js')]);
      const runtime = await openRuntime(config);
      try {
        const report = await runFsck(runtime, { repair: values.repair ?? false, print: (line) => process.stderr.write(`${line}\n`) });
        process.stdout.write(formatFsckReport(report));
        return report.clean ? 0 : 1;
      } finally {
        await runtime.close();
      }
    }
    default:
      process.stderr.write(`unknown command: ${command}\n\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    if (err instanceof ConfigError) process.stderr.write(`s3dedup: ${err.message}\n`);
    else process.stderr.write(`s3dedup: ${(err as Error).message ?? String(err)}\n`);
    process.exit(1);
  },
);
