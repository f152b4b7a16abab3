#!/usr/bin/env node
// The s3dedup command line: `server` now; migrations and maintenance commands come later.
import { parseArgs } from 'node:util';
import { ConfigError, ENV_VARS, loadConfig } from '../config/config.js';
import { configureLogger } from '../log.js';
import { startServer } from '../server.js';

const USAGE = `usage: s3dedup <command> [options]

commands:
  server        run the Filetracker v2 proxy (http://LISTEN_ADDRESS:LISTEN_PORT/ft)

options:
  -c, --config FILE   JSON config file (s3dedup format); environment variables override it
  -e, --env           configure from environment variables only (the default without -c)
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
    options: { config: { type: 'string', short: 'c' }, env: { type: 'boolean', short: 'e' }, help: { type: 'boolean', short: 'h' } },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const config = loadConfig({ configFile: values.config });
  configureLogger({ level: config.logLevel, json: config.logJson });
  switch (command) {
    case 'server': {
      const running = await startServer(config);
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
      return new Promise<number>(() => {}); // runs until a signal
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
