/**
 * `covidct bench …`: the commander wiring of the benchmarks in cli/bench/ (select, classify,
 * decode, worker, pipeline, gateway, memory, all). Each bench's module is loaded only when its
 * command runs, so `bench select` never pays for TensorFlow.js or the local stack.
 */

import type { Command } from 'commander';
import { definedOnly } from '../../core/defined.js';
import { integerOption, parseNumber, printJson, warn } from '../io.js';

/** Register `bench` and its subcommands (select, classify, decode, worker, pipeline, gateway, memory, all). */
export function registerBench(program: Command): void {
  const bench = program.command('bench').description('measure how fast covidct works on your files');
  registerBenchClassify(bench);
  registerBenchSuite(bench);
  bench
    .command('select')
    .description(
      'time reading + slice selection of a series or study against the authors’ numpy + OpenCV code on the same TIFF files, under glibc’s default allocator and under the settings that suit it best, alternating runs; best of --runs, medians beside',
    )
    .argument('<path>', 'a series folder or a study folder of series folders')
    .option(
      '--json',
      'print JSON: { slicesPerSecond, msPerSlice, medianMsPerSlice, runs, slices, format, reference, referenceBest, ratio, ratioBest, ... }',
    )
    .addOption(integerOption('--runs <n>', 'timed runs of each side after a warm-up run', 1, 1000, 11))
    .option('--reference-tiff <dir>', 'the same series as TIFF, for the reference when PATH holds DICOM')
    .option(
      '--uncompressed',
      'measure uncompressed copies of the TIFF slices (as COVID-CTset stores them), made in a temporary folder',
    )
    .option('--no-reference', 'skip the numpy + OpenCV reference')
    .action(
      async (
        path: string,
        opts: {
          json?: boolean;
          runs: number;
          referenceTiff?: string;
          uncompressed?: boolean;
          reference: boolean;
        },
      ) => {
        const { benchSelect, describeMismatch, formatSelect } = await import('../bench/select.js');
        const result = await benchSelect(path, {
          runs: opts.runs,
          uncompressed: opts.uncompressed === true,
          reference: opts.reference,
          ...(opts.referenceTiff === undefined ? {} : { referenceTiff: opts.referenceTiff }),
        });
        if (opts.json) printJson(result);
        else process.stdout.write(`${formatSelect(result)}\n`);
        if (result.countsMatch === false) {
          warn(
            `dark-pixel counts differ from the reference on ${result.mismatches.length} slice(s), e.g. ${describeMismatch(result.mismatches[0]!)}`,
          );
          process.exitCode = 1;
        }
      },
    );
}

/** `bench classify`: TensorFlow.js and ONNX Runtime are loaded inside the action, so `bench select` never pays for them. */
function registerBenchClassify(bench: Command): void {
  bench
    .command('classify')
    .description(
      'time classification of 512×512 slices by a randomly initialised architecture on each backend: covidct’s CPU engine (ONNX Runtime), wasm on one thread, the wasm worker pool, cpu (with --include-cpu), tfjs-node(-gpu) when installed; beside them an independent PyTorch export of the same network on ONNX Runtime (bench/reference_onnx.py); variants alternate round by round, figures are medians',
    )
    .option('--arch <name>', 'architecture: resnet50v2-fpn (default, the paper’s), resnet50v2 or xception')
    .addOption(integerOption('--batch <n>', 'slices per forward pass', 1, 256, 4))
    .addOption(integerOption('--runs <n>', 'timed batches per worker in each round', 1, 1000, 1))
    .addOption(
      integerOption(
        '--rounds <n>',
        'rounds after one warm-up round; the variants take turns in each',
        1,
        1000,
        5,
      ),
    )
    .addOption(integerOption('--workers <n>', 'pool workers (default: the available cores)', 1, 256))
    .addOption(
      integerOption(
        '--sessions <n>',
        'ONNX Runtime sessions, each in a worker thread when more than one, covidct’s engine and the reference alike (default: 2 with two cores or more, else 1)',
        1,
        256,
      ),
    )
    .addOption(
      integerOption(
        '--threads <n>',
        'ONNX Runtime intra-op threads per session, both alike (default: the cores ÷ the sessions)',
        1,
        256,
      ),
    )
    .option('--no-reference', 'skip the PyTorch reference (bench/reference_onnx.py, /usr/bin/python3)')
    .option(
      '--no-wasm',
      'skip the wasm variants (ONNX Runtime against the reference only: more rounds in less time)',
    )
    .option('--include-cpu', 'also time the pure-JS cpu backend (slow: tens of seconds per slice)')
    .addOption(
      integerOption(
        '--input-size <n>',
        'build at this input size instead of 512 (quick checks only)',
        32,
        4096,
      ),
    )
    .option('--width <f>', 'multiply filter counts by this (quick checks only)', parseNumber('--width'))
    .option(
      '--json',
      'print JSON: { arch, inputShape, batch, runs, rounds, variants: [ { name, backend, workers, threads, msPerSlice, slicesPerSecond, perRound } ], reference, ratio, ortVsWasmPool, unavailable }',
    )
    .action(
      async (opts: {
        arch?: string;
        batch: number;
        runs: number;
        rounds: number;
        workers?: number;
        threads?: number;
        sessions?: number;
        reference: boolean;
        wasm: boolean;
        includeCpu?: boolean;
        inputSize?: number;
        width?: number;
        json?: boolean;
      }) => {
        const [{ benchClassify, formatClassify }, { pytorchReference }, { DEFAULT_ARCHITECTURE }] =
          await Promise.all([
            import('../bench/classify.js'),
            import('../bench/classify-reference.js'),
            import('../../models/registry.js'),
          ]);
        const build = {
          ...definedOnly({
            inputSize: opts.inputSize,
            width: opts.width,
          }),
        };
        const result = await benchClassify({
          batch: opts.batch,
          runs: opts.runs,
          rounds: opts.rounds,
          includeCpu: opts.includeCpu === true,
          wasm: opts.wasm,
          ...definedOnly({
            arch: opts.arch,
            poolSize: opts.workers,
            threads: opts.threads,
            sessions: opts.sessions,
          }),
          ...(Object.keys(build).length === 0 ? {} : { build }),
          ...(opts.reference ? { reference: pytorchReference(opts.arch ?? DEFAULT_ARCHITECTURE) } : {}),
          onVariant: opts.json ? () => {} : (name) => process.stderr.write(`covidct: timing ${name}…\n`),
        });
        if (opts.json) {
          printJson(result);
          return;
        }
        process.stdout.write(`${formatClassify(result)}\n`);
      },
    );
}

/**
 * The suite's benches (cli/bench/): each module is loaded only when its command runs, so `bench
 * select` never pays for TensorFlow.js or the local stack.
 */
function registerBenchSuite(bench: Command): void {
  const emit = (json: boolean | undefined, result: unknown, text: () => string) => {
    if (json) printJson(result);
    else process.stdout.write(`${text()}\n`);
  };
  bench
    .command('decode')
    .description(
      'time full decoding of one 512×512 slice per format (TIFF none/LZW/Deflate, DICOM uncompressed and each compressed syntax) against OpenCV and pydicom on the same bytes',
    )
    .addOption(integerOption('--runs <n>', 'timed decodes per format after a warm-up', 1, 10000, 20))
    .option('--no-reference', 'skip the OpenCV/pydicom reference')
    .option('--json', 'print JSON')
    .action(async (opts: { runs: number; reference: boolean; json?: boolean }) => {
      const { benchDecode, formatDecode } = await import('../bench/decode.js');
      const result = await benchDecode({ runs: opts.runs, reference: opts.reference });
      emit(opts.json, result, () => formatDecode(result));
    });
  bench
    .command('worker')
    .description(
      'time the worker loop (real consumer and classify code, local S3 and SQS) with one batch in flight and with the next batch prefetched (the default) on this machine’s backend and on a simulated accelerator, alternating in one run',
    )
    .addOption(integerOption('--slices <n>', 'slice jobs per run', 8, 100000, 240))
    .addOption(integerOption('--rounds <n>', 'alternating rounds', 1, 100, 3))
    .option('--model <dir>', 'model folder (default: a tiny 512×512 model, see cli/bench/tiny-model.ts)')
    .addOption(integerOption('--workers <n>', 'wasm pool workers (1: this thread)', 1, 256))
    .addOption(integerOption('--forward-batch <n>', 'slices per forward pass', 1, 256))
    .option(
      '--accelerator-ms <ms>',
      'simulated accelerator: ms per slice',
      parseNumber('--accelerator-ms'),
      10,
    )
    .option(
      '--latency-ms <ms>',
      'S3/SQS latency added in the accelerator scenario',
      parseNumber('--latency-ms'),
      20,
    )
    .option('--json', 'print JSON')
    .action(
      async (opts: {
        slices: number;
        rounds: number;
        model?: string;
        workers?: number;
        forwardBatch?: number;
        acceleratorMs: number;
        latencyMs: number;
        json?: boolean;
      }) => {
        const { benchWorker } = await import('../bench/worker.js');
        const result = await benchWorker({
          slices: opts.slices,
          rounds: opts.rounds,
          acceleratorMs: opts.acceleratorMs,
          s3LatencyMs: opts.latencyMs,
          ...definedOnly({
            modelDir: opts.model,
            workers: opts.workers,
            forwardBatch: opts.forwardBatch,
          }),
        });
        emit(opts.json, result, () =>
          result.scenarios
            .flatMap((sc) => [
              `${sc.name}: ${sc.description}`,
              ...sc.variants.map(
                (v) =>
                  `  ${v.name.padEnd(8)} ${v.msPerSlice.toFixed(2).padStart(8)} ms/slice  ${v.slicesPerSecond.toFixed(1).padStart(7)} slices/s  ×${v.speedup.toFixed(2)}`,
              ),
            ])
            .join('\n'),
        );
      },
    );
  bench
    .command('pipeline')
    .description(
      'time the real sample study and a phantom series through the whole local pipeline (upload → decision), with the share of each stage, against diagnose in one process',
    )
    .addOption(integerOption('--phantom-slices <n>', 'phantom series length', 10, 1000, 300))
    .option('--model <dir>', 'model folder (default: a tiny 512×512 model)')
    .addOption(integerOption('--workers <n>', 'wasm pool workers', 1, 256))
    .option('--json', 'print JSON')
    .action(async (opts: { phantomSlices: number; model?: string; workers?: number; json?: boolean }) => {
      const { benchPipeline } = await import('../bench/pipeline.js');
      const result = await benchPipeline({
        phantomSlices: opts.phantomSlices,
        ...definedOnly({
          modelDir: opts.model,
          workers: opts.workers,
        }),
      });
      emit(opts.json, result, () => JSON.stringify(result, null, 2));
    });
  bench
    .command('gateway')
    .description(
      'time the DICOM gateway (needs dist/ and DCMTK): its receive rate from storescu against storescp -od in the same run, and the time from the last instance to the SR in the PACS through the local stack, split into quiet period, gateway work and cloud time',
    )
    .addOption(
      integerOption(
        '--instances <n>',
        'series length for the receive rate (30 real slices, replicated with new UIDs)',
        1,
        10000,
        120,
      ),
    )
    .addOption(integerOption('--repetitions <n>', 'alternating timed repetitions per receiver', 1, 100, 5))
    .addOption(integerOption('--runs <n>', 'end-to-end runs of the real series', 1, 20, 1))
    .addOption(integerOption('--quiet-seconds <n>', "the gateway's --quiet-seconds end to end", 1, 3600, 2))
    .option('--model <dir>', 'model folder end to end (default: the shipped default model)')
    .option(
      '--dir <dir>',
      'where the receivers write (its file system is measured; default: the OS temp folder)',
    )
    .option('--no-end-to-end', 'measure the receive rate only')
    .option('--json', 'print JSON')
    .action(
      async (opts: {
        instances: number;
        repetitions: number;
        runs: number;
        quietSeconds: number;
        model?: string;
        dir?: string;
        endToEnd: boolean;
        json?: boolean;
      }) => {
        const { benchGateway, formatGateway } = await import('../bench/gateway.js');
        const result = await benchGateway({
          instances: opts.instances,
          repetitions: opts.repetitions,
          endToEnd: opts.endToEnd,
          endToEndRuns: opts.runs,
          quietSeconds: opts.quietSeconds,
          ...definedOnly({
            modelDir: opts.model,
            workParent: opts.dir,
          }),
        });
        emit(opts.json, result, () => formatGateway(result));
      },
    );
  bench
    .command('memory')
    .description(
      'measure the select Lambda’s peak RSS for one phantom series (a fresh process running only the handler) and derive its memory setting (needs dist/: npm run build)',
    )
    .addOption(integerOption('--slices <n>', 'series length', 10, 1000, 600))
    .option('--json', 'print JSON')
    .action(async (opts: { slices: number; json?: boolean }) => {
      const { benchSelectMemory } = await import('../bench/select-memory.js');
      const result = await benchSelectMemory({ slices: opts.slices });
      emit(opts.json, result, () => `${result.slices} slices: ${result.derivation}`);
    });
  bench
    .command('all')
    .description('run every bench; --quick: a small version of each (CI checks the suite with it)')
    .option('--quick', 'a few slices, one run, small models: checks the suite, not figures to quote')
    .option('--json', 'print JSON')
    .action(async (opts: { quick?: boolean; json?: boolean }) => {
      const { benchAll, summarizeAll } = await import('../bench/all.js');
      const result = await benchAll({
        quick: opts.quick === true,
        onBench: (name) => process.stderr.write(`covidct: bench ${name}…\n`),
      });
      emit(opts.json, result, () => summarizeAll(result));
    });
}
