import { describe, expect, it } from 'vitest';
import { prefetch } from '../../src/util/prefetch.js';

/** A source that records how far it has been read, yielding one item per macrotask. */
function counted(n: number, failAfter?: number) {
  const state = { pulled: 0 };
  async function* source() {
    for (let i = 0; i < n; i++) {
      await new Promise((r) => setImmediate(r));
      if (failAfter !== undefined && i === failAfter) throw new Error(`failed at ${i}`);
      state.pulled++;
      yield i;
    }
  }
  return { state, source: source() };
}

const settle = () => new Promise((r) => setTimeout(r, 20));

describe('prefetch', () => {
  it('drains the source before anyone iterates, and gives every item in order', async () => {
    const { state, source } = counted(50);
    const items = prefetch(source);
    await settle();
    expect(state.pulled).toBe(50);
    const out: number[] = [];
    for await (const i of items) out.push(i);
    expect(out).toEqual([...Array(50).keys()]);
  });

  it('hands items to a consumer that waits for them as they come', async () => {
    const { state, source } = counted(5);
    const seen: Array<[number, number]> = [];
    for await (const i of prefetch(source)) seen.push([i, state.pulled]);
    expect(seen.map(([i]) => i)).toEqual([0, 1, 2, 3, 4]);
    // The first item reached the consumer before the source had been read to the end.
    expect(seen[0][1]).toBeLessThan(5);
  });

  it('throws a source error after the items before it', async () => {
    const { source } = counted(10, 3);
    const out: number[] = [];
    const err = await (async () => {
      for await (const i of prefetch(source)) out.push(i);
    })().catch((e: unknown) => e);
    expect(out).toEqual([0, 1, 2]);
    expect((err as Error).message).toBe('failed at 3');
  });

  it('keeps the error of a source nobody iterates, without an unhandled rejection', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      prefetch(counted(10, 0).source);
      await settle();
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});
