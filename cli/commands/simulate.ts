/**
 * `covidct simulate --profile baseline|surge | --arrivals FILE`: the surge model. A discrete-event
 * simulation of the deployed pipeline with the CDK stack's own settings (simulate/), printing
 * time to result (p50/p95/p99), peak tasks, GPU-hours and cost per study; `--plot` draws backlog
 * and tasks over time.
 */
import type { Command } from 'commander';
import { definedOnly } from '../../core/defined.js';
import { InputError } from '../../core/errors.js';
import type { SliceDistribution } from '../../simulate/params.js';
import { integerOption, parseNumber, printJson } from '../io.js';

/** The options as commander hands them over. */
export interface SimulateCliOptions {
  readonly arrivals?: string;
  readonly profile?: string;
  readonly json?: boolean;
  readonly seed: number;
  readonly maxTasks?: number;
  readonly minTasks?: number;
  readonly backlogPerTask?: number;
  readonly warmPool?: number;
  readonly scalingMetric?: string;
  readonly instanceType?: string;
  readonly gpuRate?: number;
  readonly instanceStart?: number;
  readonly taskStart?: number;
  readonly slices?: string;
  readonly selectedFraction?: number;
  readonly selectConcurrency?: number;
  readonly price?: number;
  readonly spotPrice?: number;
  readonly plot?: string;
}

/** `--slices N` (every study N slices) or `--slices MIN-MAX` (uniform). */
export function parseSlices(text: string): SliceDistribution {
  const fixed = /^\s*(\d+)\s*$/.exec(text);
  if (fixed) return { kind: 'fixed', slices: Number(fixed[1]) };
  const range = /^\s*(\d+)\s*-\s*(\d+)\s*$/.exec(text);
  if (range && Number(range[1]) >= 1 && Number(range[2]) >= Number(range[1])) {
    return { kind: 'uniform', min: Number(range[1]), max: Number(range[2]) };
  }
  throw new InputError('--slices', `must be N or MIN-MAX (whole numbers, MIN ≤ MAX), got '${text}'`);
}

function scalingMetric(text: string): 'visible' | 'visible+in-flight' {
  if (text === 'visible' || text === 'visible+in-flight') return text;
  throw new InputError('--scaling-metric', `must be visible or visible+in-flight, got '${text}'`);
}

function minutes(seconds: number): string {
  return seconds < 120 ? `${seconds.toFixed(1)} s` : `${(seconds / 60).toFixed(1)} min`;
}

/** Register `covidct simulate`. */
export function registerSimulate(program: Command): void {
  program
    .command('simulate')
    .description(
      'simulate the deployed pipeline (the CDK stack’s settings and scaling policies) under a load: time to result, peak tasks, GPU-hours, cost per study',
    )
    .option('--profile <name>', 'baseline (50 studies/h for 24 h) or surge (2,000 studies/h for 3 h)')
    .option(
      '--arrivals <file>',
      'JSON [{time, hospital, slices?}] or CSV time,hospital,slices (time: seconds or ISO 8601)',
    )
    .option('--json', 'print the whole result as JSON (timeline and scaling events included)')
    .addOption(integerOption('--seed <n>', 'seed of the random draws', 0, 2 ** 32 - 1, 1))
    .addOption(integerOption('--max-tasks <n>', 'most GPU tasks (default: the stack’s maxGpuTasks)', 1, 1000))
    .addOption(integerOption('--min-tasks <n>', 'fewest GPU tasks (default 0: scale to zero)', 0, 1000))
    .addOption(
      integerOption(
        '--backlog-per-task <n>',
        'target visible messages per task (default: the stack’s backlogPerTask)',
        1,
        100_000,
      ),
    )
    .addOption(integerOption('--warm-pool <n>', 'stopped GPU hosts kept in a warm pool (default 0)', 0, 1000))
    .option(
      '--scaling-metric <m>',
      'backlog the policy counts: visible (as deployed) or visible+in-flight (what-if)',
    )
    .option('--instance-type <type>', 'GPU instance type (default: the stack’s gpuInstanceType)')
    .option(
      '--gpu-rate <slices/s>',
      'slices per second per task (default: the FLOP estimate, bench/GPU.md)',
      parseNumber('--gpu-rate'),
    )
    .option(
      '--instance-start <s>',
      'seconds from launch until a host can start a task (default 300)',
      parseNumber('--instance-start'),
    )
    .option(
      '--task-start <s>',
      'seconds from placement until a task polls (default 60)',
      parseNumber('--task-start'),
    )
    .option('--slices <n|min-max>', 'slices per study when the arrivals do not say (default 100-400)')
    .option(
      '--selected-fraction <f>',
      'share of slices selection keeps (default 0.4)',
      parseNumber('--selected-fraction'),
    )
    .addOption(
      integerOption(
        '--select-concurrency <n>',
        'select Lambda reserved concurrency (default: the stack’s)',
        1,
        10_000,
      ),
    )
    .option(
      '--price <usd/h>',
      'on-demand price per GPU host hour (default: the instance type’s, dated in the output)',
      parseNumber('--price'),
    )
    .option(
      '--spot-price <usd/h>',
      'also report the cost at this Spot price per hour',
      parseNumber('--spot-price'),
    )
    .option(
      '--plot <file.png>',
      'draw visible messages, running and desired tasks and hosts over time as a PNG',
    )
    .action(async (o: SimulateCliOptions) => {
      const [{ readFile, writeFile }, arrivalsModule, { simulate }, params, gpu] = await Promise.all([
        import('node:fs/promises'),
        import('../../simulate/arrivals.js'),
        import('../../simulate/engine.js'),
        import('../../simulate/params.js'),
        import('../../simulate/gpu.js'),
      ]);
      const { isProfileName, parseArrivals, PROFILES, profileArrivals, profileSeconds } = arrivalsModule;
      if ((o.profile === undefined) === (o.arrivals === undefined)) {
        throw new InputError('simulate', 'give exactly one of --profile NAME or --arrivals FILE');
      }
      const base = params.defaultParams();
      const instanceType = o.instanceType ?? base.instanceType;
      const known = gpu.GPU_INSTANCE_TYPES[instanceType];
      const p = {
        ...base,
        seed: o.seed,
        instanceType,
        gpuSlicesPerSecond: o.gpuRate ?? gpu.estimatedSlicesPerSecond(instanceType) ?? Number.NaN,
        onDemandUsdPerHour: o.price ?? known?.onDemandUsdPerHour ?? Number.NaN,
        ...definedOnly({
          maxTasks: o.maxTasks,
          minTasks: o.minTasks,
          backlogPerTask: o.backlogPerTask,
          warmPoolSize: o.warmPool,
        }),
        ...(o.scalingMetric === undefined ? {} : { scalingMetric: scalingMetric(o.scalingMetric) }),
        ...definedOnly({
          instanceStartSeconds: o.instanceStart,
          taskStartSeconds: o.taskStart,
        }),
        ...(o.slices === undefined ? {} : { slices: parseSlices(o.slices) }),
        ...definedOnly({
          selectedFraction: o.selectedFraction,
          selectConcurrency: o.selectConcurrency,
          spotUsdPerHour: o.spotPrice,
        }),
      };
      if (p.maxTasks < p.minTasks) {
        throw new InputError('--min-tasks', `${p.minTasks} is above the most tasks (${p.maxTasks})`);
      }
      if (!Number.isFinite(p.gpuSlicesPerSecond)) {
        throw new InputError(
          '--gpu-rate',
          `no estimate for instance type '${instanceType}': give the slices per second per task`,
        );
      }
      if (!Number.isFinite(p.onDemandUsdPerHour)) {
        throw new InputError(
          '--price',
          `no price known for instance type '${instanceType}': give the on-demand price per hour`,
        );
      }
      let arrivals: ReturnType<typeof parseArrivals>;
      let horizonSeconds = 0;
      let source: string;
      if (o.profile !== undefined) {
        if (!isProfileName(o.profile)) {
          throw new InputError(
            '--profile',
            `'${o.profile}' is not a profile: expected ${Object.keys(PROFILES).join(' or ')}`,
          );
        }
        const profile = PROFILES[o.profile];
        arrivals = profileArrivals(profile, p.seed);
        horizonSeconds = profileSeconds(profile);
        source = `profile ${o.profile}: ${profile.description}`;
      } else {
        const file = o.arrivals ?? '';
        let text: string;
        try {
          text = await readFile(file, 'utf8');
        } catch (error) {
          throw new InputError(
            file,
            `cannot read the arrivals file (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
          );
        }
        arrivals = parseArrivals(text, file);
        source = `arrivals ${file}`;
      }
      const result = simulate(arrivals, p, { horizonSeconds });
      if (o.plot !== undefined) {
        const { renderSimulationPng } = await import('../../simulate/plot.js');
        const title = `${o.profile ?? 'arrivals'}: max ${p.maxTasks} tasks, min ${p.minTasks}, backlog ${p.backlogPerTask}/task${p.warmPoolSize > 0 ? `, warm pool ${p.warmPoolSize}` : ''}${p.scalingMetric === 'visible' ? '' : `, ${p.scalingMetric}`}`;
        await writeFile(o.plot, renderSimulationPng(result, { title }));
      }
      if (o.json) {
        printJson({ source, pricesAsOf: gpu.PRICES_AS_OF, ...result });
        return;
      }
      const q = result.timeToResultSeconds;
      const lines = [
        `${source}; ${result.studies} studies, ${result.selectedSlices} selected slices of ${result.slices}`,
        `settings: ${p.instanceType}, tasks ${p.minTasks}–${p.maxTasks}, backlog per task ${p.backlogPerTask} (${p.scalingMetric}), warm pool ${p.warmPoolSize}, ${p.gpuSlicesPerSecond.toFixed(1)} slices/s per task`,
        `time to result: p50 ${minutes(q.p50)}, p95 ${minutes(q.p95)}, p99 ${minutes(q.p99)}, max ${minutes(q.max)}`,
        `peak: ${result.peakTasks} running tasks (desired ${result.peakDesired}), ${result.peakHosts} hosts, ${result.peakVisible} visible messages; ${result.scalingEvents.length} scaling actions`,
        `GPU: ${result.gpuHours.toFixed(2)} host-hours (${result.busyGpuHours.toFixed(2)} h classifying) over ${(result.endSeconds / 3600).toFixed(2)} h`,
        `cost: $${result.onDemand.totalUsd.toFixed(2)} on demand at $${p.onDemandUsdPerHour}/h = $${result.onDemand.perStudyUsd.toFixed(4)} per study${result.spot === undefined ? '' : `; Spot at $${result.spot.usdPerHour}/h: $${result.spot.totalUsd.toFixed(2)} = $${result.spot.perStudyUsd.toFixed(4)} per study`}`,
        `prices: ${o.price === undefined ? gpu.PRICES_AS_OF : 'as given'}`,
        ...(result.unfinished > 0 ? [`${result.unfinished} studies unfinished when the run stopped`] : []),
        ...(o.plot === undefined ? [] : [`plot: ${o.plot}`]),
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}
