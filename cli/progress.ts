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

/** A progress bar per phase (an epoch, a feature set): a new phase stops the bar and starts another. */
export interface PhasedProgress {
  update(phase: string, done: number, total: number): void;
  stop(): void;
}

/** Start a {@link PhasedProgress}; each phase's bar is labelled with the phase. */
export function phasedProgress(): PhasedProgress {
  let current: Progress = { update() {}, stop() {} };
  let label: string | undefined;
  return {
    update(phase, done, total) {
      if (phase !== label) {
        current.stop();
        label = phase;
        current = startProgress(phase, 1);
      }
      current.update(done, total);
    },
    stop() {
      current.stop();
    },
  };
}
