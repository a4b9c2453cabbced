/**
 * Bounded concurrency: one helper for every place that runs asynchronous work over a list with a
 * cap on how much is in flight (reading slices, uploading, fetching, classifying batches).
 */

/** Run `task` over `items` with at most `limit` in flight. */
export async function forEachLimited<T>(
  items: readonly T[],
  limit: number,
  task: (item: T, index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const runners = Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, async () => {
    while (next < items.length) {
      const i = next++;
      await task(items[i]!, i);
    }
  });
  await Promise.all(runners);
}
