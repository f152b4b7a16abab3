// A counting semaphore: bounds how many block writes are in flight so an upload's memory is
// bounded by configuration, not by file size.
export class Semaphore {
  private available: number;
  private readonly waiters: Array<() => void> = [];

  constructor(permits: number) {
    if (!(permits >= 1)) throw new Error(`semaphore needs at least one permit, got ${permits}`);
    this.available = permits;
  }

  /** Resolves once a permit is held; pair every acquire with one release. */
  acquire(): Promise<void> {
    if (this.available > 0) {
      this.available--;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.available++;
  }
}
