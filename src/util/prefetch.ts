// Reads an async iterable ahead of its consumer: the source starts now and is drained as fast as
// it yields, into a queue the consumer takes from at its own pace. For a large GET's ranged S3
// reads: the S3 response is read at the socket's speed (a slow client never holds the
// connection open), and each piece goes on to the client as soon as it came instead of after the
// whole range, so most pieces die young and cost a scavenge instead of a mark-compact.
//
// Memory: everything the source yields that the consumer has not taken is held; the caller bounds
// the source (here, one run of an extent).

/**
 * The items of `source` in order, read ahead. A source error is kept and thrown to the consumer
 * after the items before it; one that is never iterated drops it (no unhandled rejection).
 */
export function prefetch<T>(source: AsyncIterable<T>): AsyncIterable<T> {
  const queue: T[] = [];
  let head = 0;
  let done = false;
  let failed = false;
  let error: unknown;
  let wake: (() => void) | undefined;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  void (async () => {
    try {
      for await (const item of source) {
        queue.push(item);
        notify();
      }
    } catch (err) {
      failed = true;
      error = err;
    }
    done = true;
    notify();
  })();
  return {
    async *[Symbol.asyncIterator]() {
      for (;;) {
        if (head < queue.length) {
          const item = queue[head];
          queue[head++] = undefined as T; // let the consumer's copy be the last reference
          if (head === queue.length) queue.length = head = 0;
          yield item;
        } else if (done) {
          if (failed) throw error;
          return;
        } else {
          await new Promise<void>((resolve) => (wake = resolve));
        }
      }
    },
  };
}
