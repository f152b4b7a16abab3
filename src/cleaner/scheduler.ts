// Runs the cleaner inside the server: a pass every CLEANER_INTERVAL seconds and a full scan
// on CLEANER_FULL_SCAN_CRON. A failed pass is logged and retried at the next tick.
import { Cron } from 'croner';
import type { Logger } from '../log.js';
import { recordCleanerRun } from '../metrics/metrics.js';
import type { Cleaner } from './cleaner.js';

export interface ScheduleOptions {
  /** seconds between ordinary passes */
  intervalSeconds: number;
  /** cron expression (5 fields, server local time) for full scans; '' for none */
  fullScanCron: string;
}

export class CleanerScheduler {
  private timer: NodeJS.Timeout | null = null;
  private cron: Cron | null = null;
  private stopped = false;

  constructor(
    private readonly cleaner: Cleaner,
    private readonly options: ScheduleOptions,
    private readonly log: Logger,
  ) {}

  start(): void {
    const tick = () => {
      this.timer = setTimeout(async () => {
        await this.runOnce(false);
        if (!this.stopped) tick();
      }, this.options.intervalSeconds * 1000);
      this.timer.unref();
    };
    tick();
    if (this.options.fullScanCron) {
      this.cron = new Cron(this.options.fullScanCron, { protect: true, unref: true }, () => this.runOnce(true));
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.cron?.stop();
  }

  private async runOnce(fullScan: boolean): Promise<void> {
    try {
      const r = await this.cleaner.run({ fullScan });
      recordCleanerRun({ result: 'success', blocksDeleted: r.blocks, mapsDeleted: r.maps, orphansDeleted: r.orphans });
    } catch (err) {
      recordCleanerRun({ result: 'error' });
      this.log.error({ err, fullScan }, 'cleaner pass failed; nothing more was deleted, the next pass resumes');
    }
  }
}

/** Checks a cron expression; returns a reason when it is invalid. */
export function cronProblem(expression: string): string | null {
  if (expression === '') return null;
  try {
    new Cron(expression, { paused: true }).stop();
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}
