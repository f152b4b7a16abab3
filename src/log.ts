// Root pino logger; modules take a child named after themselves (`logger.child({ module: 'store' })`).
import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

export interface LogOptions {
  /** pino level: trace, debug, info, warn, error, fatal, silent */
  level?: string;
  /** true: one JSON object per line; false: the same JSON (pretty printing is left to pino-pretty) */
  json?: boolean;
  /** where the lines go (tests read them back); stdout by default */
  destination?: DestinationStream;
}

let root: Logger = pino({ level: process.env.LOG_LEVEL ?? 'info' });

export function configureLogger(options: LogOptions): Logger {
  const settings = { level: options.level ?? 'info', base: { pid: process.pid } };
  root = options.destination ? pino(settings, options.destination) : pino(settings);
  return root;
}

/** A child logger named by module, e.g. `moduleLogger('blobs.s3')`. */
export function moduleLogger(module: string): Logger {
  return root.child({ module });
}
