/**
 * Which labelled slices calibrate a seeded model's BatchNorm statistics (`covidct model seed
 * --calibrate-csv`): a few spread evenly over each class, so the statistics see both.
 */

/** Pick `count` slices spread evenly over each class (half COVID, half normal where possible). */
export function pickCalibration<T extends { readonly label: string }>(
  items: readonly T[],
  count: number,
): T[] {
  const covid = items.filter((i) => i.label === 'covid');
  const normal = items.filter((i) => i.label !== 'covid');
  const take = (list: readonly T[], k: number) =>
    Array.from(
      { length: Math.min(k, list.length) },
      (_, j) => list[Math.floor(((j + 0.5) * list.length) / Math.min(k, list.length))]!,
    );
  const half = Math.ceil(count / 2);
  return [...take(covid, half), ...take(normal, count - Math.min(half, covid.length))];
}
