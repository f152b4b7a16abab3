// An in-memory LRU bounded by the summed cost of its entries (bytes for blocks, block refs for
// file lookups). One entry may take at most an eighth of the capacity, so that a single large
// value cannot evict everything else.
export class Lru<K, V> {
  private readonly entries = new Map<K, { value: V; cost: number }>();
  private used = 0;

  /** @param capacity summed cost kept; 0 disables the cache */
  constructor(readonly capacity: number) {}

  get(key: K): V | undefined {
    const hit = this.entries.get(key);
    if (!hit) return undefined;
    // Map iteration order is insertion order: re-inserting marks it most recently used.
    this.entries.delete(key);
    this.entries.set(key, hit);
    return hit.value;
  }

  set(key: K, value: V, cost: number): void {
    if (cost > this.capacity / 8) return;
    this.delete(key);
    this.entries.set(key, { value, cost });
    this.used += cost;
    for (const [oldest, e] of this.entries) {
      if (this.used <= this.capacity) break;
      this.entries.delete(oldest);
      this.used -= e.cost;
    }
  }

  delete(key: K): void {
    const e = this.entries.get(key);
    if (!e) return;
    this.entries.delete(key);
    this.used -= e.cost;
  }

  clear(): void {
    this.entries.clear();
    this.used = 0;
  }

  /** Summed cost of the entries held. */
  get size(): number {
    return this.used;
  }
}
