/** A progress bar for long runs, drawn on stderr only when it is a terminal (never in CI logs or pipes). */
import cliProgress from 'cli-progress';

/** A progress display; a no-op when stderr is not a TTY. */
export interface Progress {
  update(done: number, total: number): void;
  stop(): void;
}

/** Start a progress bar labelled `label`. Short runs (under `minTotal` items) draw nothing. */
export function startProgress(label: string, minTotal = 20): Progress {
  if (!process.stderr.isTTY) return { update() {}, stop() {} };
  let bar: cliProgress.SingleBar | undefined;
  return {
    update(done, total) {
      if (total < minTotal) return;
      if (!bar) {
        bar = new cliProgress.SingleBar(
          {
            format: `${label} [{bar}] {value}/{total} {eta_formatted}`,
            stream: process.stderr,
            clearOnComplete: true,
          },
          cliProgress.Presets.shades_classic,
        );
        bar.start(total, 0);
      }
      bar.update(done);
    },
    stop() {
      bar?.stop();
    },
  };
}
