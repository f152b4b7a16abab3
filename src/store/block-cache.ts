// An in-memory LRU of stored segments keyed by block hash. Blocks are immutable (a key names
// its content), so a cached segment can never be stale, across instances too. Bounded in bytes.
export class BlockCache {
  private readonly entries = new Map<string, Buffer>();
  private bytes = 0;

  /** @param capacity bytes of segments kept; 0 disables the cache */
  constructor(readonly capacity: number) {}

  get(hash: string): Buffer | undefined {
    const hit = this.entries.get(hash);
    if (hit) {
      // Map iteration order is insertion order: re-inserting marks it most recently used.
      this.entries.delete(hash);
      this.entries.set(hash, hit);
    }
    return hit;
  }

  set(hash: string, segment: Buffer): void {
    if (segment.length > this.capacity / 8 || this.entries.has(hash)) return;
    this.entries.set(hash, segment);
    this.bytes += segment.length;
    for (const [oldest, buf] of this.entries) {
      if (this.bytes <= this.capacity) break;
      this.entries.delete(oldest);
      this.bytes -= buf.length;
    }
  }

  get size(): number {
    return this.bytes;
  }
}
